"""Selection at scale: wall time and peak memory of each strategy of rayssl.selection on N synthetic
embeddings of width 512, budget 100 with 50 already labelled, plus faiss's k-means against
scikit-learn's MiniBatchKMeans at the K TypiClust uses there (labelled + budget = 150)
-> bench/results/selection_scale.{json,md}.

The embeddings: a mixture of 1,000 Gaussian blobs (unit-norm centres, per-dimension sigma 0.6 / sqrt(512),
so a row's noise has about 0.6 of a centre's length), L2-normalised, generated in chunks of 50,000 rows
(float32, 2 GB at 1M). Each (N, strategy) runs in a fresh subprocess, which generates the same embeddings
(seeded) and reports its own peak RSS (resource.getrusage ru_maxrss): the embeddings plus what the
strategy adds. `seconds` is the selection alone (generation excluded). Rows of earlier runs at other N
are kept in the JSON, so 100k and 1M can be run apart.

    .venv/bin/python bench/selection_scale.py --n 100000
    .venv/bin/python bench/selection_scale.py --n 100000 1000000   # 1M: ~2 GB of embeddings, peak < 8 GiB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rayssl.markdown import document, table

DIM, BLOBS, SPREAD, CHUNK = 512, 1_000, 0.6, 50_000
BUDGET, LABELLED = 100, 50
STRATEGIES = ("random", "kcenter", "typiclust", "probcover")
KMEANS = ("kmeans faiss", "kmeans sklearn")  # rows of the k-means comparison, at K = LABELLED + BUDGET
OUT = "bench/results/selection_scale"


def embeddings(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """float32 [n, dim] unit rows: a mixture of BLOBS Gaussian blobs, generated CHUNK rows at a time
    (no float64 or [n, dim] temporary)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((BLOBS, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, CHUNK):
        rows = min(CHUNK, n - lo)
        block = centres[rng.integers(0, BLOBS, rows)] + rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(
            SPREAD / np.sqrt(dim)
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[lo : lo + rows] = block
    return out


def peak_rss_gib() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def inertia(x: np.ndarray, centroids: np.ndarray, assign: np.ndarray) -> float:
    """Sum of squared distances of rows to their centroid, in chunks."""
    return float(
        sum(((x[lo : lo + CHUNK] - centroids[assign[lo : lo + CHUNK]]) ** 2).sum(dtype=np.float64) for lo in range(0, len(x), CHUNK))
    )


def run_one(n: int, what: str) -> dict[str, Any]:
    """One (N, strategy or k-means library) measured in this process: the worker side of main()."""
    x = embeddings(n)
    data_gib = peak_rss_gib()
    k = LABELLED + BUDGET
    start = time.perf_counter()
    if what == "kmeans faiss":
        from rayssl.selection.neighbours import kmeans

        centroids, assign = kmeans(x, k, seed=0)
        details: dict[str, Any] = {"K": k}
    elif what == "kmeans sklearn":
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(k, batch_size=5_000, n_init=1, random_state=0).fit(x)  # the authors' batch size
        centroids, assign, details = km.cluster_centers_, km.labels_, {"K": k, "batch_size": 5_000}
    else:
        from rayssl import selection

        labelled = np.zeros(n, bool)
        labelled[np.random.default_rng(1).choice(n, LABELLED, replace=False)] = True
        details = selection.select(what, x, BUDGET, labelled=labelled, seed=0).details
    seconds = time.perf_counter() - start
    if what in KMEANS:
        details["inertia"] = inertia(x, np.asarray(centroids, np.float32), np.asarray(assign))
    return {
        "n": n,
        "dim": DIM,
        "strategy": what,
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(peak_rss_gib(), 3),
        "data_rss_gib": round(data_gib, 3),
        "load_1min": round(os.getloadavg()[0], 2),  # other jobs on the cores slow every row: say how busy they were
        "details": details,
    }


def measure(n: int, what: str) -> dict[str, Any]:
    """run_one in a fresh subprocess, so that the peak RSS is that strategy's own."""
    done = subprocess.run([sys.executable, __file__, "--worker", what, "--n", str(n)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} at N = {n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write(rows: list[dict[str, Any]], out: str) -> None:
    """<out>.json (every row) and <out>.md (the table)."""
    rows = sorted(rows, key=lambda r: (r["n"], [*STRATEGIES, *KMEANS].index(r["strategy"])))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = table(
        ["n", "dim", "strategy", "seconds", "peak_rss_gib", "peak before selecting (GiB)", "load (1 min) after"],
        "rrlrrrr",
        [
            [
                f"{r['n']:,}",
                r["dim"],
                r["strategy"],
                f"{r['seconds']:.2f}",
                f"{r['peak_rss_gib']:.2f}",
                f"{r['data_rss_gib']:.2f}",
                r.get("load_1min", ""),
            ]
            for r in rows
        ],
    )
    header = (
        f"Selection at scale on {os.cpu_count()} CPU cores: budget {BUDGET}, {LABELLED} labelled, synthetic unit-norm "
        f"embeddings ({BLOBS:,} Gaussian blobs); k-means rows at K = {LABELLED + BUDGET}; each row a fresh process; "
        "peak before selecting: the process with its embeddings, before the strategy ran; "
        "a load above the core count means other jobs shared the cores during that row."
    )
    Path(out + ".md").write_text(document("# rayssl.selection at scale", header, lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--only", nargs="+", choices=[*STRATEGIES, *KMEANS], default=[*STRATEGIES, *KMEANS])
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--worker", choices=[*STRATEGIES, *KMEANS], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(args.n[0], args.worker)))
        return
    previous = json.loads(Path(args.out + ".json").read_text()) if Path(args.out + ".json").exists() else []
    rows = [r for r in previous if (r["n"], r["strategy"]) not in {(n, w) for n in args.n for w in args.only}]
    for n in args.n:
        for what in args.only:
            row = measure(n, what)
            print(f"n={n:,} {what}: {row['seconds']:.2f} s, peak {row['peak_rss_gib']:.2f} GiB", flush=True)
            rows.append(row)
            write(rows, args.out)  # after every row: a long 1M run keeps what it measured
    print(Path(args.out + ".md").read_text())


if __name__ == "__main__":
    main()
