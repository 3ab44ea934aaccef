"""Multi-node pretraining from S3 with one node lost mid-run (see multinode_scenario.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
SCENARIO = Path(__file__).with_name("multinode_scenario.py")


def test_spread_over_nodes_from_s3_and_resume_after_node_loss(s3_endpoint, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, str(SCENARIO), s3_endpoint, str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FINDINGS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-4000:] + proc.stderr[-4000:]
    findings = json.loads(lines[-1].removeprefix("FINDINGS "))
    print(findings)
    assert findings["train_worker_nodes"] == 2  # SPREAD put the two Train workers on two nodes
    # Finished on the surviving node: 4 epochs x 15 steps, the interrupted epoch redone, not double counted.
    assert findings["metrics"]["epoch"] == 3 and findings["metrics"]["global_step"] == 60
    # Resumed from the committed checkpoint(s): those epochs were not trained (or checkpointed) again.
    committed = findings["committed_at_removal"]
    assert committed and findings["committed_at_end"][: len(committed)] == committed
    assert sorted(set(findings["committed_at_end"])) == [0, 1, 2, 3]
    assert all(findings["committed_at_end"].count(e) == 1 for e in committed)
    assert findings["alive_nodes"] == 2  # head + the surviving worker
