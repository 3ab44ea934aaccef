"""`rayssl sweep`: Ray Tune over label budgets x variants (supervised, + inversion, FixMatch,
pretrained) x label draws, the inversion weight alpha, the entropy weight beta and the learning
rate; then a label-efficiency table: per (budget, variant, draw) the trial selected on validation
accuracy, scored once on the test split; mean +- std of those test accuracies over the draws.

A one-worker trial (with `in_process_trials`, the default) runs the worker loop inside its own
Tune actor (rayssl.train.loop.train_in_process) and reports each round with ray.tune.report: no
Train controller and worker actors to start, which on a small machine cost more than the training
(about 45 s per trial on 2 cores). A multi-worker trial is a function that builds a TorchTrainer
(Ray Train V2) whose worker group reports to Tune through TuneReportCallback. ASHA (per budget x
variant x draw) stops weak trials early, and an interrupted sweep resumes with Tuner.restore
without rerunning finished trials.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.search import BasicVariantGenerator

from rayssl import console
from rayssl.config import ConfigError, FinetuneConfig, SweepConfig
from rayssl.data import storage
from rayssl.data.labelled import select_labels
from rayssl.eval.classifier import accuracy_on_test_split
from rayssl.eval.robustness import mean_corruption_accuracies
from rayssl.logs import get_logger
from rayssl.methods import registry
from rayssl.methods.sweep_rows import SweepRow, TrialSample
from rayssl.quality.report import sample_name
from rayssl.quality.run import LeakedTestSplit, find_test_leaks
from rayssl.train import checkpoints, faults
from rayssl.train.launch import init_ray, run_finetune
from rayssl.train.launch import with_absolute_paths as finetune_absolute
from rayssl.tune.grouped_asha import GroupedASHAScheduler
from rayssl.tune.progress import SweepProgress
from rayssl.tune.report import summarise, write_report
from rayssl.tune.selection import BALANCED, selection_uri, write_selections

# A trial whose validation accuracy ends below this multiple of chance has collapsed.
COLLAPSE_FACTOR = 2.0
# The trial driver only waits on its TorchTrainer, so it holds a token CPU share (Tune refuses
# an empty request); the trainers' workers and Ray Data tasks get the rest of the cluster.
TRIAL_DRIVER_CPUS = 0.1


def sweep_rows(cfg: SweepConfig) -> list[SweepRow]:
    """The sweep's rows, in table order: the ones its flags enable (each method module lists its own,
    rayssl.methods.registry), restricted to cfg.variants if set. Raises ConfigError naming `variants`
    for a name that is not one of the enabled rows."""
    enabled = registry.sweep_rows(cfg)
    labels = [row.label for row in enabled]
    unknown = [v for v in cfg.variants if v not in labels]
    if unknown:
        raise ConfigError(f"variants: {unknown} {'is' if len(unknown) == 1 else 'are'} not among this sweep's rows {labels}")
    return [row for row in enabled if row.label in cfg.variants] if cfg.variants else enabled


def variant_names(cfg: SweepConfig) -> list[str]:
    """The table's row labels, in order."""
    return [row.label for row in sweep_rows(cfg)]


def trial_config(cfg: SweepConfig, params: dict[str, Any], trial_name: str) -> FinetuneConfig:
    """The FinetuneConfig one trial runs: its row's configuration of the base config, with the trial's
    label budget and draw, learning rate and run directory. params: what Tune drew for the trial."""
    row = {r.key: r for r in registry.sweep_rows(cfg)}[params["variant"]]
    sample = TrialSample(
        alpha=params["alpha"], beta=params["beta"], ivae_unlabelled=params["ivae_unlabelled"], ivae_label_only=params["ivae_label_only"]
    )
    trial = row.configure(cfg.base_finetune(), sample)
    picks = selection_uri(cfg, params["budget"], params["label_seed"]) if cfg.selection != BALANCED else ""
    return dataclasses.replace(
        trial,
        run=dataclasses.replace(trial.run, name=trial_name, storage_path=storage.join(cfg.storage_path, cfg.name, "trials")),
        semisup=dataclasses.replace(trial.semisup, labels_per_class=params["budget"], label_seed=params["label_seed"], labelled_ids=picks),
        optim=dataclasses.replace(trial.optim, lr=params["lr"]),
    )


def row_label(cfg: SweepConfig, params: dict[str, Any]) -> str:
    """The table row of a trial, from the row key Tune's grid holds."""
    return {r.key: r.label for r in registry.sweep_rows(cfg)}[params["variant"]]


def runs_in_process(cfg: SweepConfig) -> bool:
    """Whether each trial trains in its own Tune actor rather than driving a Ray Train worker group."""
    return cfg.in_process_trials and cfg.finetune.train.num_workers == 1


def trial_resources(cfg: SweepConfig) -> dict[str, float]:
    """What Tune reserves per trial: the one worker's share for an in-process trial, else the driver's token share
    (the worker group then reserves its own)."""
    train = cfg.finetune.train
    if runs_in_process(cfg):
        return {"CPU": train.cpus_per_worker, **({"GPU": 1} if train.use_gpu else {})}
    return {"CPU": TRIAL_DRIVER_CPUS}


def reserved_per_trial(cfg: SweepConfig) -> dict[str, float]:
    """Everything one trial holds through Ray: its Tune actor's reservation plus, for a trial that drives a
    worker group, the group's."""
    if runs_in_process(cfg):
        return trial_resources(cfg)
    train = cfg.finetune.train
    return {"CPU": TRIAL_DRIVER_CPUS + train.num_workers * train.cpus_per_worker, "GPU": train.num_workers if train.use_gpu else 0}


def run_trial(params: dict[str, Any], sweep: SweepConfig, fault_plan: faults.FaultPlan) -> None:
    """Tune trainable: one fine-tuning run, reporting every round to Tune. params: Tune's draws for
    this trial; sweep: the sweep's config and fault_plan its driver's fault drills (ray.tune.with_parameters:
    in the object store, not in params)."""
    trial_cfg = trial_config(sweep, params, f"trial_{ray.tune.get_context().get_trial_id()}")
    if runs_in_process(sweep):
        run_finetune(trial_cfg, show_progress=False, report=ray.tune.report, fault_plan=fault_plan)
    else:
        run_finetune(trial_cfg, callbacks=[TuneReportCallback()], show_progress=False, fault_plan=fault_plan)


# Credentials Ray Tune would copy from the driver's environment into every trial actor's runtime_env.
CREDENTIAL_ENV_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"})


def keep_credentials_out_of_runtime_envs() -> None:
    """Stop Ray Tune from putting AWS credentials into its trial actors' runtime_env.

    Tune 2.60 copies AWS_* variables from the driver's environment into the runtime_env of every
    trainable it registers (ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE), and Ray's
    runtime_env agent logs each runtime_env it creates at INFO: the secret key landed in
    runtime_env_agent.log in every sweep (tests/integration/test_pretrain.py::test_pretrain_from_s3
    reads every Ray log for it). Trial actors reach storage as every other Ray worker does, with
    the node's environment or credential chain, so the copy adds nothing but the leak.
    """
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = set(class_cache.ENV_VARS_TO_PROPAGATE) - CREDENTIAL_ENV_VARS  # a set, as Ray declares it


def build_tuner(cfg: SweepConfig) -> ray.tune.Tuner:
    fs, root = storage.resolve(cfg.storage_path, cfg.finetune.storage)
    sweep_dir = storage.join(cfg.storage_path, cfg.name)
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, sweep=cfg, fault_plan=faults.from_environment()), trial_resources(cfg)
    )
    restore_path = storage.join(root, cfg.name) if storage.is_remote(cfg.storage_path) else storage.resolve(sweep_dir)[1]
    if ray.tune.Tuner.can_restore(restore_path, storage_filesystem=fs):
        get_logger().info("resuming sweep %s (finished trials are kept)", sweep_dir)
        return ray.tune.Tuner.restore(restore_path, trainable=trainable, resume_errored=True, storage_filesystem=fs)
    variants = [row.key for row in sweep_rows(cfg)]
    return ray.tune.Tuner(
        trainable,
        # Only what Tune grids over or draws; every trial draws every weight (rayssl.methods.sweep_rows.TrialSample).
        param_space={
            "budget": ray.tune.grid_search(cfg.budgets),
            "variant": ray.tune.grid_search(variants),
            "label_seed": ray.tune.grid_search(cfg.label_seeds),
            "alpha": ray.tune.loguniform(cfg.alpha_min, cfg.alpha_max),
            "beta": ray.tune.choice(cfg.betas),
            "lr": ray.tune.loguniform(cfg.lr_min, cfg.lr_max),
            "ivae_unlabelled": ray.tune.loguniform(cfg.ivae_unlabelled_min, cfg.ivae_unlabelled_max),
            "ivae_label_only": ray.tune.loguniform(cfg.ivae_label_only_min, cfg.ivae_label_only_max),
        },
        tune_config=ray.tune.TuneConfig(
            # The concurrency limit goes to the generator itself: Tune applies TuneConfig's
            # max_concurrent_trials only to the default generator or to a Searcher, and silently
            # drops it for a BasicVariantGenerator passed in (Ray 2.60, tune.py).
            search_alg=BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.max_concurrent_trials),
            num_samples=cfg.samples,
            # Trials only compete within their (budget, variant, label draw) cell: see grouped_asha.
            scheduler=GroupedASHAScheduler(
                group_by=("budget", "variant", "label_seed"),
                metric="val_acc",
                mode="max",
                time_attr="training_iteration",
                max_t=math.ceil(cfg.finetune.schedule.steps / cfg.finetune.schedule.eval_every),
                grace_period=cfg.grace_period,
            ),
        ),
        run_config=ray.tune.RunConfig(
            name=cfg.name,
            storage_path=root,
            storage_filesystem=fs,
            failure_config=ray.tune.FailureConfig(max_failures=cfg.trial_max_failures),
            # Tune's status tables only with --verbose; SweepProgress shows trials done / running / pending.
            verbose=None if console.verbose() else 0,
            callbacks=[SweepProgress(len(cfg.budgets) * len(variants) * len(cfg.label_seeds) * cfg.samples)],
        ),
    )


def compute_used(results: list[tuple[dict, dict]], cfg: SweepConfig) -> dict[str, Any]:
    """The sweep's cost from Tune's per-trial accounting: wall time (first trial start to last
    report, restores included) and the CPU/GPU-hours the trials reserved through Ray (each trial's
    running time x reserved_per_trial), in all and per variant.

    results: [(config, metrics)], metrics with Tune's time_total_s and timestamp (trials that
    never reported count nothing).
    """
    reserved = reserved_per_trial(cfg)
    cpus, gpus = reserved["CPU"], reserved.get("GPU", 0)
    spans: list[tuple[float, float]] = []
    per_variant: dict[str, dict[str, float]] = {}  # variant -> trials, cpu_hours, gpu_hours
    for config, metrics in results:
        if "time_total_s" not in metrics:
            continue
        seconds = float(metrics["time_total_s"])
        spans.append((metrics["timestamp"] - seconds, metrics["timestamp"]))
        used = per_variant.setdefault(row_label(cfg, config), {"trials": 0, "cpu_hours": 0.0, "gpu_hours": 0.0})
        used["trials"] += 1
        used["cpu_hours"] += seconds * cpus / 3600
        used["gpu_hours"] += seconds * gpus / 3600
    return {
        "wall_s": max(end for _, end in spans) - min(start for start, _ in spans) if spans else 0.0,
        "cpu_hours": sum(v["cpu_hours"] for v in per_variant.values()),
        "gpu_hours": sum(v["gpu_hours"] for v in per_variant.values()),
        "resources_per_trial": {"CPU": cpus, "GPU": gpus},
        "per_variant": per_variant,
    }


def collapsed(metrics: dict, num_classes: int) -> bool:
    """Validation accuracy at or near chance (below COLLAPSE_FACTOR x 1/num_classes)."""
    return metrics["val_acc"] < COLLAPSE_FACTOR / num_classes


def select_best(results: list[tuple[dict, dict]], num_classes: int) -> dict[tuple[int, str, int], tuple[dict, dict]]:
    """Per (budget, variant, label draw), the trial with the best final validation accuracy.

    results: [(config, metrics)]. A collapsed trial is chosen only when every trial of its cell
    collapsed, and the report then says so.
    """
    best: dict[tuple[int, str, int], tuple[dict, dict]] = {}
    for config, metrics in results:
        if "val_acc" not in metrics:
            continue  # a trial that never finished a round
        key = (config["budget"], config["variant"], config["label_seed"])  # variant: the row's key
        rank = (not collapsed(metrics, num_classes), metrics["val_acc"])
        if key not in best or rank > (not collapsed(best[key][1], num_classes), best[key][1]["val_acc"]):
            best[key] = (config, metrics)
    return best


def labelled_per_class(cfg: FinetuneConfig) -> tuple[float, int]:
    """(labels per class a trial trained on, classes its labelled set covers). Labels per class: its
    budget, or for "all" the mean over classes with labels (the label plan is cheap to recompute:
    label columns only, no image); a selected set covers only the classes its picks happen to hold."""
    counts = [n for n in select_labels(cfg.data, cfg.semisup, cfg.storage).report["labelled"].values() if n]
    per_class = float(np.mean(counts)) if cfg.semisup.labels_per_class == "all" else float(cfg.semisup.labels_per_class)
    return per_class, len(counts)


def with_absolute_paths(cfg: SweepConfig) -> SweepConfig:
    """Local paths made absolute on the driver: trials run in Tune actors with another cwd."""

    def absolute(uri: str) -> str:
        return storage.absolute(uri)

    return dataclasses.replace(
        cfg,
        storage_path=absolute(cfg.storage_path),
        finetune=finetune_absolute(cfg.finetune),
        pretrained={name: absolute(uri) for name, uri in cfg.pretrained.items()},
        selection_run=absolute(cfg.selection_run) if cfg.selection_run else "",
    )


def check_leaks(cfg: SweepConfig, sweep_dir: str) -> None:
    """Refuse (or warn about, by cfg.leak_check) test images that duplicate images of another split:
    a leaked test set overstates every accuracy in the table."""
    out = storage.join(sweep_dir, "leak_check")
    leaks = find_test_leaks(cfg.finetune.data.shards, out, cfg.finetune.storage)
    if not leaks:
        get_logger().info("leak check: no test image of %s duplicates another split", cfg.finetune.data.shards)
        return
    examples = ", ".join(f"{sample_name(x['a'])} = {sample_name(x['b'])} ({x['kind']})" for x in leaks[:3])
    message = (
        f"{len(leaks)} duplicate pair{'s' if len(leaks) > 1 else ''} join{'' if len(leaks) > 1 else 's'} the test split of {cfg.finetune.data.shards} to another split, e.g. {examples}; "
        f"all in {storage.join(out, 'leaks.json')}. Remove them (`rayssl quality` reports them) or set leak_check: "
        + ("warn" if cfg.leak_check == "refuse" else "off")
    )
    if cfg.leak_check == "refuse":
        raise LeakedTestSplit(message)
    get_logger().warning("leak check: %s", message)


def run_sweep(cfg: SweepConfig) -> list[dict]:
    """Run (or resume) the sweep and write label_efficiency.{json,md,png} to `<storage_path>/<name>`."""
    cfg = with_absolute_paths(cfg)
    variant_names(cfg)  # a misspelt row fails here, before Ray starts
    select_labels(cfg.finetune.data, cfg.finetune.semisup, cfg.finetune.storage)  # so does a bad label table, not in every trial
    init_ray(cfg.finetune.ray)
    sweep_dir = storage.join(cfg.storage_path, cfg.name)
    if cfg.leak_check != "off":
        check_leaks(cfg, sweep_dir)
    if cfg.selection != BALANCED:
        write_selections(cfg)
    results = _run_trials(cfg)
    selected = _selected_trials(cfg, results)
    # All selected trials in one pass over the test split (one Ray Data read, not one per row).
    candidates = {key: (trial_cfg, checkpoint) for key, (trial_cfg, checkpoint, _) in selected.items()}
    test_acc = accuracy_on_test_split(candidates, sweep_dir) if candidates else {}
    corruption_acc = mean_corruption_accuracies(candidates, cfg.seed, sweep_dir) if candidates and cfg.robustness else {}
    draws = [_draw(cfg, key, *trial, test_acc[key], corruption_acc.get(key), sweep_dir) for key, trial in selected.items()]
    rows = summarise(draws)
    dataset = cfg.finetune.data.shards.rstrip("/").rsplit("/", 1)[-1]
    title = f"Label efficiency: {dataset} (sweep {cfg.name})"
    table = write_report(
        sweep_dir, rows, draws, variant_names(cfg), cfg.finetune.storage, title, compute_used(results, cfg), cfg.target_acc
    )
    print(
        f"\nLabel efficiency (test accuracy of the trials selected on validation, mean ± std over label draws; written to {sweep_dir}):\n{table}\n",
        flush=True,
    )
    return rows


def _run_trials(cfg: SweepConfig) -> list[tuple[dict, dict]]:
    """Fit (or resume) the Tuner; [(trial's Tune params, its final metrics)] of every trial that started."""
    keep_credentials_out_of_runtime_envs()
    grid = build_tuner(cfg).fit()
    unfinished = len(grid) - grid.num_terminated - grid.num_errors
    if unfinished:
        # Ctrl-C (or a lost driver) stops Tune early; the table then covers the finished trials only.
        get_logger().warning("sweep interrupted with %d of %d trials unfinished: the same command resumes it", unfinished, len(grid))
    trials = (grid[i] for i in range(len(grid)))  # ResultGrid is a sequence (__len__, __getitem__) with no __iter__ in its types
    return [(r.config, dict(r.metrics or {})) for r in trials if r.config]


Selected = dict[tuple[int | str, str, int], tuple[FinetuneConfig, str, dict]]  # (budget, row, draw) -> (config, checkpoint URI, metrics)


def _selected_trials(cfg: SweepConfig, results: list[tuple[dict, dict]]) -> Selected:
    """Per (budget, row label, label draw), the trial selected on validation, with its config and checkpoint."""
    best = {
        (budget, row_label(cfg, config), seed): (config, metrics)
        for (budget, _, seed), (config, metrics) in select_best(results, cfg.finetune.semisup.num_classes).items()
    }
    selected: Selected = {}
    for key, (config, metrics) in sorted(best.items(), key=str):
        trial_cfg = trial_config(cfg, config, "unused")
        checkpoint = checkpoints.latest_checkpoint(metrics["run_dir"], trial_cfg.storage)
        if checkpoint is None:  # the test split scores checkpoints: a selected trial without one cannot be scored
            raise RuntimeError(
                f"the selected trial of budget {key[0]}, {key[1]}, draw {key[2]} has no complete checkpoint under {metrics['run_dir']}"
            )
        selected[key] = (trial_cfg, checkpoint, metrics)
    return selected


def _draw(
    cfg: SweepConfig,
    key: tuple,
    trial_cfg: FinetuneConfig,
    checkpoint: str,
    metrics: dict,
    test_acc: float,
    corruption_acc: float | None,
    sweep_dir: str,
) -> dict[str, Any]:
    """One label draw's row of label_efficiency.json: the selected trial's settings and accuracies."""
    budget, variant, label_seed = key
    row = {r.label: r for r in registry.sweep_rows(cfg)}[variant]
    per_class, classes_covered = labelled_per_class(trial_cfg)
    draw = {
        "budget": budget,
        "variant": variant,
        "label_seed": label_seed,
        "labels_per_class": per_class,
        "classes_covered": classes_covered,
        "selection": cfg.selection,
        "alpha": trial_cfg.inversion.alpha,
        "beta": trial_cfg.inversion.beta,
        "consistency": trial_cfg.fixmatch.weight,
        "lr": trial_cfg.optim.lr,
        "val_acc": metrics["val_acc"],
        "test_acc": test_acc,
        "collapsed": collapsed(metrics, cfg.finetune.semisup.num_classes),
        "checkpoint": storage.relative_to(checkpoint, sweep_dir),
        "tensorboard": storage.relative_to(storage.join(metrics["run_dir"], "tensorboard"), sweep_dir),  # the trial's curves
        **({"corruption_acc": corruption_acc} if corruption_acc is not None else {}),
        **row.reports(trial_cfg),  # what the row's own method drew (the inverted VAE's bound weights)
    }
    get_logger().debug("budget %s, %s, draw %d: val %.4f, test %.4f", budget, variant, label_seed, draw["val_acc"], test_acc)
    return draw
