"""URI -> (pyarrow filesystem, path) for local paths, file://, s3:// and gs://.

Everything that reads or writes shards, manifests, run files and checkpoints goes through
`resolve`, so one endpoint override serves MinIO, moto or any other S3-compatible store.
Credentials are never passed here: pyarrow reads them from the environment or the standard
AWS/GCP chain (instance profile, IRSA, workload identity).
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlparse

import pyarrow.fs as pafs

from rayssl.config import StorageConfig


class ObjectStoreError(OSError):
    """An object store did not answer within its retries and timeouts (StorageConfig). Names the
    endpoint and the object, so a dead endpoint reads as one line, not as a hang or a traceback."""


def endpoint_of(uri: str, storage: StorageConfig) -> str:
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        return storage.s3_endpoint or f"AWS S3 ({storage.s3_region})"
    return "Google Cloud Storage" if scheme in ("gs", "gcs") else "the local filesystem"


@contextmanager
def reaching(uri: str, storage: StorageConfig) -> Iterator[None]:
    """Turn a remote store's network or server error into ObjectStoreError; a missing object
    stays FileNotFoundError, local errors pass through."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not is_remote(uri) or isinstance(exc, ObjectStoreError):
            raise
        attempts = f" (retried up to {storage.s3_max_attempts} attempts)" if urlparse(uri).scheme == "s3" else ""
        raise ObjectStoreError(f"object store {endpoint_of(uri, storage)} failed{attempts} for {uri}: {exc}") from exc


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in ("s3", "gs", "gcs")


def resolve(uri: str, storage: StorageConfig = StorageConfig()) -> tuple[pafs.FileSystem, str]:
    """Return the filesystem that serves `uri` and the path inside it.

    Local paths are made absolute so that Ray workers with another working directory agree.
    """
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme in ("", "file"):
        local = parsed.path if scheme == "file" else uri
        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve())
    if scheme == "s3":
        return _s3(storage), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(), f"{parsed.netloc}{parsed.path}".rstrip("/")
    raise ValueError(f"unsupported URI scheme {scheme!r} in {uri!r} (use a path, file://, s3://, gs://)")


class RetryingS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3FileSystem that keeps its retry strategy across pickling.

    pyarrow's own `__reduce__` leaves `retry_strategy` out, so every copy shipped to a Ray Data task,
    a Train worker or the Train controller fell back to pyarrow's default of 3 attempts whatever
    `storage.s3_max_attempts` said. This class pickles as the StorageConfig it was built from.
    """

    def __init__(self, storage: StorageConfig, **options: object) -> None:
        super().__init__(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=storage.s3_max_attempts), **options)
        self.storage = storage

    def __reduce__(self) -> tuple:
        return _s3, (self.storage,)


def _s3(storage: StorageConfig) -> RetryingS3FileSystem:
    limits = {"region": storage.s3_region, "connect_timeout": storage.s3_connect_timeout_s, "request_timeout": storage.s3_request_timeout_s}
    if storage.s3_endpoint is None:
        return RetryingS3FileSystem(storage, **limits)
    endpoint = urlparse(storage.s3_endpoint)
    if not endpoint.scheme or not endpoint.netloc:
        raise ValueError(f"storage.s3_endpoint must look like http://host:port, got {storage.s3_endpoint!r}")
    return RetryingS3FileSystem(storage, endpoint_override=endpoint.netloc, scheme=endpoint.scheme, allow_bucket_creation=True, **limits)


def join(base: str, *parts: str) -> str:
    """Join URI or path components with '/' (object stores have no os.sep)."""
    return posixpath.join(base, *parts)


def relative_to(uri: str | None, base: str) -> str | None:
    """`uri` relative to `base` when it lies under it (reports stay free of machine paths), else as is."""
    if uri is None:
        return None
    prefix = base.rstrip("/") + "/"
    return uri[len(prefix) :] if uri.startswith(prefix) else uri


def absolute(uri: str, storage: StorageConfig = StorageConfig()) -> str:
    """A local path made absolute (Ray workers and Data tasks run in other directories); remote URIs
    and "" (an unset optional path) unchanged."""
    return uri if not uri or is_remote(uri) else resolve(uri, storage)[1]


class StoredConfig(Protocol):
    """A command's config dataclass: it has a `storage` section that its URIs are reached through."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def storage(self) -> StorageConfig: ...


C = TypeVar("C", bound=StoredConfig)


def absolute_uris(cfg: C, *fields: str) -> C:
    """`cfg` with the URIs of `fields` made `absolute` under its own storage settings: what a command
    does to its paths before Ray starts."""
    return dataclasses.replace(cfg, **{name: absolute(getattr(cfg, name), cfg.storage) for name in fields})


def write_bytes(uri: str, data: bytes, storage: StorageConfig = StorageConfig()) -> None:
    fs, path = resolve(uri, storage)
    with reaching(uri, storage):
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)


def read_bytes(uri: str, storage: StorageConfig = StorageConfig()) -> bytes:
    fs, path = resolve(uri, storage)
    with reaching(uri, storage), fs.open_input_stream(path) as src:
        return src.read()


def exists(uri: str, storage: StorageConfig = StorageConfig()) -> bool:
    fs, path = resolve(uri, storage)
    with reaching(uri, storage):
        return fs.get_file_info(path).type != pafs.FileType.NotFound


def delete(uri: str, storage: StorageConfig = StorageConfig()) -> None:
    fs, path = resolve(uri, storage)
    with reaching(uri, storage):
        fs.delete_file(path)


def list_files(uri: str, storage: StorageConfig = StorageConfig(), suffix: str = "") -> list[str]:
    """Paths (inside the filesystem) of the files directly or recursively under `uri`."""
    fs, path = resolve(uri, storage)
    with reaching(uri, storage):
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
