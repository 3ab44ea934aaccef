"""A seeded fault-injecting HTTP proxy on 127.0.0.1, in front of an S3 endpoint (moto's server).

A set fraction of requests is answered with a fault instead of being forwarded:

    slowdown   503 SlowDown (S3's throttling answer)
    internal   500 InternalError
    reset      the connection is reset before any answer
    delay      forwarded after a pause (a slow store, not an error)

`down = True` makes every request a reset: the endpoint is gone. Fault bodies stay far below
1 KB (DESIGN: a 5xx body larger than the object confuses pyarrow's retry).
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULTS = ("slowdown", "internal", "reset", "delay")
_ERROR_XML = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
# Hop-by-hop headers are the proxy's own business (RFC 9110 7.6.1); the body is re-sent whole.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "content-length"}


class FaultProxy:
    def __init__(self, upstream: str, fault_rate: float, seed: int = 0, delay_s: float = 0.3) -> None:
        target = urlparse(upstream)
        self.upstream_host, self.upstream_port = target.hostname, target.port
        self.fault_rate, self.delay_s = fault_rate, delay_s
        self.down = False
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _draw(self) -> str | None:
        """The fault for the next request, or None to forward it (seeded, one draw per request)."""
        with self._lock:
            self.requests += 1
            fault = "reset" if self.down else (self._rng.choice(FAULTS) if self._rng.random() < self.fault_rate else None)
            if fault:
                self.faults[fault] += 1
            return fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real store

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes | None:
                """The request body, with HTTP chunked framing removed (the AWS SDK streams uploads
                chunked; their aws-chunked content encoding inside is the store's to decode)."""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        body += self.rfile.read(size)
                        self.rfile.readline()  # CRLF after each chunk
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # HTTP trailers
                    return body
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._draw()
                if fault == "reset":
                    # SO_LINGER 0: close sends RST, the client sees "connection reset by peer".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault in ("slowdown", "internal"):
                    code, message, status = (
                        ("SlowDown", "Reduce your request rate.", 503)
                        if fault == "slowdown"
                        else ("InternalError", "We encountered an internal error.", 500)
                    )
                    self._reply(status, {"Content-Type": "application/xml"}, _ERROR_XML.format(code=code, message=message).encode())
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)  # http.client sets Content-Length
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                    if self.command == "HEAD":  # no body, but the object's length
                        kept["Content-Length"] = response.getheader("Content-Length", "0")
                        self._reply(response.status, kept, b"", head=True)
                    else:
                        self._reply(response.status, kept, payload)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: dict[str, str], payload: bytes, head: bool = False) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                # A HEAD answer never carries a body (error or not): bytes left on a keep-alive
                # connection would be read as the start of the next response.
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        return Handler
