import pytest

from rayssl.tune.report import markdown, summarise
from rayssl.tune.sweep import select_best


def draw(seed: int, test: float, variant: str = "+ inversion loss", collapsed: bool = False) -> dict:
    return {"budget": 5, "variant": variant, "label_seed": seed, "alpha": 0.01, "beta": 0.3, "consistency": 0.0,
            "lr": 0.003, "val_acc": test, "test_acc": test, "collapsed": collapsed, "checkpoint": "trials/x"}


def test_summary_is_mean_and_sample_std_over_draws():
    (row,) = summarise([draw(0, 0.90), draw(1, 0.92), draw(2, 0.94)])
    assert row["draws"] == 3 and row["test_acc_mean"] == pytest.approx(0.92)
    assert row["test_acc_std"] == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / 2)
    assert [s["label_seed"] for s in row["selected"]] == [0, 1, 2]
    assert "92.00 ± 2.00% (n=3)" in markdown([row], ["+ inversion loss"])


def test_collapsed_draws_are_flagged_in_the_table():
    rows = summarise([draw(0, 0.11, collapsed=True), draw(1, 0.9)])
    assert rows[0]["collapsed"] == 1
    assert "collapsed in 1/2" in markdown(rows, ["+ inversion loss"])


def test_selection_prefers_a_trial_that_did_not_collapse():
    config = {"budget": 5, "variant": "+ inversion loss", "label_seed": 0}
    collapsed, healthy, better = {"val_acc": 0.12}, {"val_acc": 0.5}, {"val_acc": 0.8}
    assert select_best([(config, collapsed), (config, healthy)], num_classes=10)[5, "+ inversion loss", 0][1] is healthy
    assert select_best([(config, healthy), (config, better)], num_classes=10)[5, "+ inversion loss", 0][1] is better
    # A cell where every trial collapsed still gets a row (flagged later), never silently dropped.
    assert select_best([(config, collapsed)], num_classes=10)[5, "+ inversion loss", 0][1] is collapsed
