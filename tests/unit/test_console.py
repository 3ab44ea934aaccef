"""The console's progress display (rayssl.console) on a non-interactive stream."""

from __future__ import annotations

import io

import pytest

from rayssl.console import ProgressDisplay


def test_non_interactive_progress_prints_rate_limited_lines_and_a_final_one():
    out = io.StringIO()  # not a terminal: plain lines, no bar
    progress = ProgressDisplay("pretrain nat", 200, "step", every_s=3600, stream=out)
    for step in range(1, 201):
        progress.update(step, loss=1.0 / step)
    assert out.getvalue() == ""  # nothing yet: one line per every_s
    progress.update(200, epoch=3)
    progress.close()
    (line,) = out.getvalue().splitlines()
    assert line.startswith("pretrain nat: 200/200 steps (100%), loss 0.005, epoch 3,") and "elapsed" in line


def test_eta_from_the_rate_so_far():
    out = io.StringIO()
    progress = ProgressDisplay("fine-tune", 100, "step", every_s=0, stream=out)
    progress.started -= 60  # 25 steps took a minute: 75 more take three
    progress.update(25, loss=0.5)
    assert "fine-tune: 25/100 steps (25%), loss 0.5, 1m00s elapsed, ETA 3m00s" in out.getvalue()


def test_close_does_not_repeat_a_line_that_said_it_all():
    out = io.StringIO()
    progress = ProgressDisplay("sweep", 4, "trial", every_s=0, stream=out)
    progress.update(4, running=0)
    progress.close()
    assert len(out.getvalue().splitlines()) == 1


def test_quiet_console_handlers_leave_file_handlers_alone(tmp_path):
    import logging

    from rayssl import console

    logger = logging.getLogger("rayssl-test-library")
    stream, file = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / "lib.log")
    logger.handlers = [stream, file]
    console.quiet_console_handlers("rayssl-test-library")
    assert stream.level == logging.WARNING and file.level == logging.NOTSET
    file.close()


def test_progress_interval_is_a_setting():
    from rayssl import console

    try:
        console.set_progress_every(5)
        assert ProgressDisplay("x", 1, "step", stream=io.StringIO()).every_s == 5
    finally:
        console.set_progress_every(60)
    with pytest.raises(ValueError, match="--progress-every must be > 0"):
        console.set_progress_every(0)
