import numpy as np
import pytest

from rayssl.tune.labels_needed import fit_curves, labels_needed, labels_needed_markdown, labels_to_reach, targets_of
from rayssl.tune.report import best_by_validation, best_markdown, markdown, summarise
from rayssl.tune.sweep import select_best


def draw(seed: int, test: float, variant: str = "+ inversion loss", collapsed: bool = False) -> dict:
    return {
        "budget": 5,
        "variant": variant,
        "label_seed": seed,
        "alpha": 0.01,
        "beta": 0.3,
        "consistency": 0.0,
        "lr": 0.003,
        "val_acc": test,
        "test_acc": test,
        "collapsed": collapsed,
        "checkpoint": "trials/x",
    }


def test_summary_is_mean_and_sample_std_over_draws():
    (row,) = summarise([draw(0, 0.90), draw(1, 0.92), draw(2, 0.94)])
    assert row["draws"] == 3 and row["test_acc_mean"] == pytest.approx(0.92)
    assert row["test_acc_std"] == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / 2)
    assert [s["label_seed"] for s in row["selected"]] == [0, 1, 2]
    assert "92.00 ± 2.00% (n=3)" in markdown([row], ["+ inversion loss"])


def test_the_best_variant_is_named_by_validation_not_by_test():
    draws = [draw(0, 0.90), draw(1, 0.92)]  # "+ inversion loss": validation = test = 0.91 on average
    for seed, (val, test) in enumerate([(0.95, 0.80), (0.93, 0.82)]):  # better on validation, worse on test
        draws.append({**draw(seed, test, variant="+ FixMatch"), "val_acc": val})
    rows = summarise(draws)
    table = ["supervised only", "+ inversion loss", "+ FixMatch"]
    (best,) = best_by_validation(rows, table)
    assert best["variant"] == "+ FixMatch" and best["val_acc_mean"] == pytest.approx(0.94) and best["test_acc_mean"] == pytest.approx(0.81)
    assert "5 labels/class: + FixMatch (validation 94.0%; test 81.00 ± 1.41%)" in best_markdown(rows, table)


def test_a_tie_on_validation_goes_to_the_variant_first_in_the_table():
    # summarise sorts by name, so "+ FixMatch" comes before "supervised only" in rows; the table lists the baseline first
    rows = summarise([draw(0, 0.80, variant="supervised only"), draw(0, 0.85, variant="+ FixMatch")])  # validation = test
    rows = [{**r, "val_acc_mean": 0.9} for r in rows]
    assert [r["variant"] for r in rows] == ["+ FixMatch", "supervised only"]
    assert best_by_validation(rows, ["supervised only", "+ FixMatch"])[0]["variant"] == "supervised only"


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


def test_labels_to_reach_interpolates_on_the_log_scale():
    curve = [(1, 0.50), (10, 0.90), (100, 0.98)]
    assert labels_to_reach(curve, 0.94) == pytest.approx(10**1.5)  # halfway from 0.90 to 0.98: halfway in log(labels)
    assert labels_to_reach(curve, 0.70) == pytest.approx(10**0.5)
    assert labels_to_reach(curve, 0.40) == 1.0  # already there at the smallest budget
    assert labels_to_reach(curve, 0.99) is None  # never reached
    # A non-monotone curve counts its first crossing.
    assert labels_to_reach([(1, 0.5), (5, 0.9), (10, 0.8), (50, 0.95)], 0.85) == pytest.approx(np.exp(np.log(5) * 0.875))


def curve_rows(curves: dict[str, list[tuple[int, float]]], spread: float = 0.0) -> list[dict]:
    """Summarised rows of three draws per (variant, budget) at mean acc +- spread."""
    return summarise(
        [
            {**draw(seed, acc + (seed - 1) * spread, variant), "budget": budget}
            for variant, curve in curves.items()
            for budget, acc in curve
            for seed in range(3)
        ]
    )


def test_two_budgets_are_interpolated_and_saved_against_supervised():
    rows = curve_rows({"supervised only": [(10, 0.80), (100, 0.96)], "+ FixMatch": [(10, 0.90), (100, 1.00)]})
    variants = ["supervised only", "+ FixMatch"]
    targets = targets_of(rows)
    assert fit_curves(rows, variants, targets) == {}  # two budgets cannot choose a form by leaving one out
    needed = {(n["variant"], n["level"]): n for n in labels_needed(rows, variants, "supervised only", targets, {})}
    # 90% of the best (1.00) is 0.90: FixMatch has it at 10 labels; supervised between 10 (0.80) and 100 (0.96).
    supervised = 10 ** (1 + (0.90 - 0.80) / (0.96 - 0.80))
    assert needed["+ FixMatch", 0.9]["labels"] == 10.0 and needed["supervised only", 0.9]["labels"] == pytest.approx(supervised)
    assert needed["+ FixMatch", 0.9]["saved"] == pytest.approx(supervised - 10.0) and needed["+ FixMatch", 0.9]["method"] == "interpolated"
    # 98%: supervised never gets there within 100 labels per class; nothing "saved" is claimed.
    assert needed["supervised only", 0.98]["labels"] is None and needed["+ FixMatch", 0.98]["saved"] is None
    table = labels_needed_markdown(list(needed.values()), variants, 100, "supervised only")
    assert "| + FixMatch | 10.0 (saves" in table and "> 100" in table and "(supervised only: not reached)" in table
    assert table.endswith("| interpolated, 2 budgets |")


def test_three_budgets_are_fitted_and_a_target_past_them_is_extrapolated():
    # A power law 1 - 0.5 n^-0.5: 0.5, 0.842, 0.9 at 1, 16, 25 labels per class; 0.95 needs 100.
    truth = [(n, 1 - 0.5 * n**-0.5) for n in (1, 16, 25)]
    rows = curve_rows({"supervised only": truth}, spread=0.002)
    targets = targets_of(rows, target_acc=0.95)
    fits = fit_curves(rows, ["supervised only"], targets)
    (n,) = labels_needed(rows, ["supervised only"], "supervised only", targets, fits)
    assert n["extrapolated"] and n["method"].startswith("fit: ") and n["budgets"] == 3
    assert n["low"] < n["labels"] < n["high"] and n["labels"] > 25
    assert "extrapolated" in labels_needed_markdown([n], ["supervised only"], 25, "supervised only")


def test_compute_is_trial_time_times_reserved_resources():
    from rayssl.config import SweepConfig, load_config
    from rayssl.tune.report import compute_markdown
    from rayssl.tune.sweep import compute_used

    cfg = load_config(
        SweepConfig, None, ["fixmatch=true", "finetune.train.num_workers=2", "finetune.train.cpus_per_worker=1.5"]
    )  # 0.1 + 2 x 1.5 = 3.1 CPUs per trial
    results = [  # Tune's grid holds each row's key; the accounting is per row of the table
        ({"variant": "supervised"}, {"time_total_s": 3600.0, "timestamp": 10_000.0}),
        ({"variant": "fixmatch"}, {"time_total_s": 1800.0, "timestamp": 12_000.0}),
        ({"variant": "fixmatch"}, {}),  # never reported: costs nothing measurable
    ]
    used = compute_used(results, cfg)
    assert used["wall_s"] == pytest.approx(12_000 - (10_000 - 3600))  # first start to last report
    assert used["cpu_hours"] == pytest.approx(3.1 * 1.5) and used["gpu_hours"] == 0
    assert used["per_variant"]["+ FixMatch"] == {"trials": 1, "cpu_hours": pytest.approx(3.1 * 0.5), "gpu_hours": 0.0}
    # A one-worker trial trains in its Tune actor: it holds that worker's share and nothing else.
    in_process = load_config(SweepConfig, None, ["fixmatch=true", "finetune.train.num_workers=1", "finetune.train.cpus_per_worker=1.5"])
    assert compute_used(results, in_process)["cpu_hours"] == pytest.approx(1.5 * 1.5)
    text = compute_markdown(used)
    assert "93.3 min of wall time, 4.65 CPU-hours" in text and "+ FixMatch: 1.55 CPU-h (1 trial)" in text


def test_budget_all_sits_at_the_labels_it_trained_on():
    # A user's sweep, budgets [1, 5, all]: "all" trained on 7.5 labels per class on average, so it goes last
    # on the axis and the "how many labels" interpolation runs between 5 and 7.5.
    draws = [
        {**draw(0, acc), "budget": budget, "labels_per_class": at}
        for budget, at, acc in ((5, 5.0, 0.80), ("all", 7.5, 0.90), (1, 1.0, 0.40))
    ]
    rows = summarise(draws)
    assert [r["budget"] for r in rows] == [1, 5, "all"] and rows[2]["labels_per_class"] == 7.5
    table = markdown(rows, ["+ inversion loss"]).splitlines()
    assert [line.split(" |")[0] for line in table[2:]] == ["| 1", "| 5", "| all (7.5)"]
    (at_95,) = labels_needed(rows, ["+ inversion loss"], "supervised only", targets_of(rows, levels=(0.95,)), {})
    # 95% of the best (0.90) is 0.855: 55% of the way from 0.80 at 5 labels to 0.90 at 7.5, on the log scale
    assert at_95["labels"] == pytest.approx(float(np.exp(np.log(5) + 0.55 * (np.log(7.5) - np.log(5)))))


def test_plot_ticks_sit_at_the_budgets_and_say_them():
    from rayssl.tune.report import plot_figure

    draws = [
        {**draw(seed, acc), "budget": budget, "labels_per_class": at}
        for seed in (0, 1)
        for budget, at, acc in ((1, 1.0, 0.4), (5, 5.0, 0.8), ("all", 7.5, 0.9))
    ]
    ax = plot_figure(summarise(draws), ["+ inversion loss"], "t").axes[0]
    assert list(ax.get_xticks()) == [1.0, 5.0, 7.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "5", "all (7.5)"]
    assert len(ax.xaxis.get_minorticklocs()) == 0  # no 2x10^0, 3x10^0 ... between them
