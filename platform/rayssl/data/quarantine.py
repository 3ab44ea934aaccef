"""Quarantine files: one JSON line per undecodable sample, under `<run_dir>/quarantine/`.

Writers are Ray Data tasks that may run again (retries, every epoch re-reads the data), so each
file is named by a hash of the sample ids it holds: writing the same bad rows again overwrites
the same file instead of double-counting them.
"""

from __future__ import annotations

import hashlib
import json

from rayssl.config import StorageConfig
from rayssl.data import storage
from rayssl.data.decode import QuarantineRecord

QUARANTINE_DIR = "quarantine"


class QuarantineThresholdExceeded(RuntimeError):
    pass


def write_records(run_dir: str, split: str, records: list[QuarantineRecord], storage_cfg: StorageConfig) -> None:
    if not records:
        return
    key = hashlib.sha1("\n".join(sorted(f"{split}/{r.sample_id}" for r in records)).encode()).hexdigest()
    lines = "".join(json.dumps({"split": split, "sample_id": r.sample_id, "index": r.index, "reason": r.reason}) + "\n" for r in records)
    storage.write_bytes(storage.join(run_dir, QUARANTINE_DIR, f"{key}.jsonl"), lines.encode(), storage_cfg)


def read_records(run_dir: str, storage_cfg: StorageConfig, split: str | None = None) -> dict[str, dict]:
    """All quarantined samples of a run (optionally one split), keyed by "split/sample_id"."""
    fs, _ = storage.resolve(run_dir, storage_cfg)
    found: dict[str, dict] = {}
    for path in storage.list_files(storage.join(run_dir, QUARANTINE_DIR), storage_cfg, suffix=".jsonl"):
        with fs.open_input_stream(path) as src:
            for line in src.read().decode().splitlines():
                record = json.loads(line)
                if split is None or record["split"] == split:
                    found[f"{record['split']}/{record['sample_id']}"] = record
    return found


def check_threshold(quarantined: int, total: int, threshold: float, run_dir: str) -> None:
    """Fail loudly when more than `threshold` of the data could not be decoded."""
    if total and quarantined / total > threshold:
        raise QuarantineThresholdExceeded(
            f"{quarantined} of {total} images ({quarantined / total:.2%}) were undecodable, above the "
            f"data.quarantine_threshold of {threshold:.2%}; see {storage.join(run_dir, QUARANTINE_DIR)}"
        )


def clear(run_dir: str, storage_cfg: StorageConfig) -> None:
    """Remove a run's quarantine records (a report about new shards must not count a previous scan's)."""
    uri = storage.join(run_dir, QUARANTINE_DIR)
    if storage.exists(uri, storage_cfg):
        fs, path = storage.resolve(uri, storage_cfg)
        fs.delete_dir(path)
