"""`rayssl` command line: each subcommand parses arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rayssl.config import (
    ConfigError,
    FinetuneConfig,
    PretrainConfig,
    QualityConfig,
    RobustnessConfig,
    StorageConfig,
    SweepConfig,
    load_config,
)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file overriding the defaults")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value (repeatable), e.g. --set train.epochs=3",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayssl", description=__doc__)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's own output: worker logs, Tune status tables, Train report lines, Ray warnings",
    )
    parser.add_argument(
        "--progress-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="where there is no terminal (CI, ray job logs): seconds between two progress lines",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # In this order: it is the order `rayssl --help` lists the subcommands in.
    _add_shards_parsers(sub)
    _add_training_parsers(sub)
    _add_report_parsers(sub)
    _add_inference_parsers(sub)
    return parser


def _add_shards_parsers(sub: argparse._SubParsersAction) -> None:
    """shards build | validate | labels (rayssl.data)."""
    shards = sub.add_parser("shards", help="build or validate parquet image shards").add_subparsers(dest="action", required=True)
    build = shards.add_parser("build", help="turn a raw dataset into shards + manifest")
    build.add_argument("--source", required=True, choices=["digits", "mnist", "cifar10", "folder"])
    build.add_argument("--path", help="raw dataset directory (not needed for digits)")
    build.add_argument("--out", required=True, help="output URI: path, file://, s3://bucket/prefix")
    build.add_argument("--rows-per-shard", type=int, default=10_000)
    build.add_argument(
        "--parallel",
        action="store_true",
        help="folder sources (local, s3://, gs://): build with Ray Data tasks across the cluster, shards sized by bytes, resumable",
    )
    build.add_argument("--shard-mb", type=float, default=256.0, help="with --parallel: encoded image bytes per shard")
    build.add_argument("--test-fraction", type=float, default=0.2, help="held-out split for sources without one")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--labels",
        metavar="TABLE",
        help="folder sources: a CSV or parquet label table (columns sample_id or path, and label: "
        "a class name or id) labelling images by their path under --path; partial labels are the normal case",
    )
    build.add_argument("--s3-endpoint", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    validate = shards.add_parser("validate", help="check every shard's footer, schema and row count")
    validate.add_argument("uri")
    validate.add_argument("--checksums", action="store_true", help="also verify sha256 (reads every byte)")
    validate.add_argument("--s3-endpoint")
    labels = shards.add_parser("labels", help="write one split's labels, without images, as a label-only table (parquet)")
    labels.add_argument("uri", help="shard set URI")
    labels.add_argument("--out", required=True, help="output parquet URI")
    labels.add_argument("--split", default="train")
    labels.add_argument("--s3-endpoint")


def _add_training_parsers(sub: argparse._SubParsersAction) -> None:
    """pretrain, finetune, sweep (rayssl.train, rayssl.tune)."""
    pretrain = sub.add_parser("pretrain", help="self-supervised pretraining on Ray Train")
    _add_config_args(pretrain)
    pretrain.add_argument("--no-eval", action="store_true", help="skip the frozen-feature evaluation")

    finetune = sub.add_parser("finetune", help="few-label fine-tuning with the network-inversion loss")
    _add_config_args(finetune)

    sweep = sub.add_parser("sweep", help="Ray Tune sweep -> label-efficiency table and plot")
    _add_config_args(sweep)


def _add_report_parsers(sub: argparse._SubParsersAction) -> None:
    """runs, quality, robustness, eval: what runs and corpora look like."""
    runs = sub.add_parser(
        "runs",
        help="list the runs under a storage path, or `runs show NAME` for one",
        usage="rayssl runs [PATH] | rayssl runs show NAME [--path PATH] [--target-acc ACC]",
    )
    runs.add_argument("words", nargs="*", metavar="PATH | show NAME", help="storage path to list (default: runs)")
    runs.add_argument("--path", default="runs", help="storage path holding the runs (local or s3://)")
    runs.add_argument("--s3-endpoint")
    runs.add_argument("--target-acc", type=float, help="`runs show SWEEP`: the labels per class each variant needs for this accuracy")
    runs.add_argument(
        "--stale-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="a run whose heartbeat is older than this is listed as interrupted, not running",
    )

    quality = sub.add_parser("quality", help="corpus report: broken files, duplicates, train/test leaks, imbalance, outliers, label issues")
    quality.add_argument("shards", nargs="?", help="shard set URI (default: the config's `shards`)")
    quality.add_argument("--out", help="report URI (default: the config's `out`)")
    quality.add_argument("--s3-endpoint", help="S3-compatible endpoint for both URIs")
    quality.add_argument(
        "--features-from",
        metavar="RUN",
        help="a pretraining (or fine-tuned) run whose backbone embeds every image: label issues then come from a probe on its embeddings",
    )
    _add_config_args(quality)

    robustness = sub.add_parser("robustness", help="accuracy under common corruptions (5 severities each) and on a shifted domain")
    robustness.add_argument(
        "run", nargs="?", help="a fine-tuned run (its classifier) or a pretraining run (linear probe); default: the config's `run`"
    )
    robustness.add_argument("--target-shards", help="shard set standing for a new domain (e.g. digits for an MNIST model)")
    robustness.add_argument("--shards", help="corrupt this shard set's test split instead of the run's own")
    robustness.add_argument("--out", help="report URI (default: <run>/robustness)")
    _add_config_args(robustness)

    evaluate = sub.add_parser("eval", help="kNN + linear-probe accuracy of a run's frozen features")
    _add_config_args(evaluate)
    evaluate.add_argument("--checkpoint", help="checkpoint URI (default: the run's latest)")


def _add_inference_parsers(sub: argparse._SubParsersAction) -> None:
    """export, predict, embed (rayssl.inference)."""
    export = sub.add_parser(
        "export", help="a fine-tuned classifier as model.pt2 (torch.export) + preprocess.json + a standalone predict.py"
    )
    export.add_argument("run", help="fine-tuned run directory (its latest checkpoint is exported)")
    export.add_argument("--out", required=True, help="output folder URI")
    export.add_argument("--s3-endpoint")
    for name, what in (
        ("predict", "batch-predict classes with a fine-tuned run (Ray Data actor pool; GPUs when present)"),
        ("embed", "backbone features of every image, fine-tuned or pretraining run (Ray Data actor pool)"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("run", help="run directory" + (" (fine-tuned)" if name == "predict" else " (fine-tuned or pretraining)"))
        p.add_argument("input", help="a shard set (URI with manifest.json), a local folder or an s3:// prefix of .png/.jpg/.jpeg images")
        p.add_argument("--out", required=True, help="output URI: parquet part files (+ _rayssl/quarantine for undecodable images)")
        p.add_argument("--split", help="shard sets: only this split (default: every split)")
        if name == "predict":
            p.add_argument("--top-k", type=int, default=5)
        p.add_argument("--batch-size", type=int, default=256, help="images per model call")
        p.add_argument("--actors", type=int, help="model actors (default: one per GPU, or 1 without GPUs)")
        p.add_argument("--s3-endpoint")
    select = sub.add_parser("select", help="which unlabelled images to label next, from a run's embeddings (TypiClust, ProbCover, ...)")
    select.add_argument("run", help="pretraining or fine-tuned run directory: its backbone embeds the train split of its shards")
    select.add_argument("--budget", type=int, required=True, help="images to pick")
    select.add_argument("--strategy", default="typiclust", help="typiclust (default), probcover, kcenter or random")
    select.add_argument("--labels", default="", help="label table of the images already labelled: covered, never picked")
    select.add_argument("--embeddings", default="", help="`rayssl embed` output of the run's shards (default: embed here)")
    select.add_argument("--seed", type=int, default=0)
    select.add_argument("--purity-clusters", type=int, help="ProbCover: k-means clusters for choosing delta (default: the classes)")
    select.add_argument("--delta", type=float, help="ProbCover: ball radius on unit embeddings, in place of the purity rule")
    select.add_argument("--out", required=True, help="CSV URI (rank, sample_id, cluster); the contact sheet goes next to it as .png")
    select.add_argument("--s3-endpoint")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rayssl import console

    console.set_verbose(args.verbose)
    try:
        console.set_progress_every(args.progress_every)
    except ValueError as exc:
        print(f"rayssl: error: {exc}", file=sys.stderr)
        return 2
    # Imported late so `rayssl --help` and config errors do not pay for importing Ray and torch.
    from ray.train import TrainingFailedError

    from rayssl.data.label_table import LabelTableError
    from rayssl.data.labels import LabelBudgetError, LeakageError
    from rayssl.data.quarantine import QuarantineThresholdExceeded
    from rayssl.data.shards import ShardError
    from rayssl.data.sources import SourceError
    from rayssl.data.storage import ObjectStoreError
    from rayssl.quality.run import LeakedTestSplit
    from rayssl.train.launch import TrainingDiverged

    try:
        return _dispatch(args)
    except (
        ConfigError,
        ShardError,
        SourceError,
        TrainingDiverged,
        QuarantineThresholdExceeded,
        FileNotFoundError,
        LeakedTestSplit,
        LabelTableError,
        LabelBudgetError,
        LeakageError,
    ) as exc:
        print(f"rayssl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ObjectStoreError as exc:
        print(f"rayssl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except TrainingFailedError as exc:
        # Workers kept failing after FailureConfig's retries: a one-line reason and a non-zero
        # exit (so `ray job submit` reports FAILED); the last checkpoint stays for a resume.
        print(f"rayssl {args.command}: error: training failed after its retries (train.max_failures): {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    return _HANDLERS[args.command](args)


def _shards(args: argparse.Namespace) -> int:
    from rayssl.data.shards import validate_shards

    storage_cfg = StorageConfig(s3_endpoint=args.s3_endpoint)
    if args.action == "labels":
        from rayssl.data.label_only import export_labels

        print(
            f"labels ok: {export_labels(args.uri, args.split, args.out, storage_cfg)} label-only records of {args.uri} ({args.split}) -> {args.out}"
        )
        return 0
    manifest = (
        _shards_build(args, storage_cfg) if args.action == "build" else validate_shards(args.uri, storage_cfg, checksums=args.checksums)
    )
    summary = ", ".join(f"{s}: {m['rows']} rows in {len(m['shards'])} shards" for s, m in manifest["splits"].items())
    print(f"{args.action} ok: {args.out if args.action == 'build' else args.uri} ({summary})")
    return 0


def _shards_build(args: argparse.Namespace, storage_cfg: StorageConfig) -> dict:
    """`shards build`, in one process or (--parallel) as Ray Data tasks; returns the manifest."""
    from rayssl.data.label_table import read_label_table
    from rayssl.data.shards import write_shards
    from rayssl.data.sources import SourceError, load_source

    if not args.parallel:
        table = read_label_table(args.labels, storage_cfg) if args.labels else None
        data = load_source(args.source, args.path, args.test_fraction, args.seed, table)
        return write_shards(data, args.out, args.rows_per_shard, storage_cfg, source_name=args.source)
    if args.source != "folder" or not args.path:
        raise SourceError("--parallel builds folder sources: pass --source folder --path URI")
    from rayssl.config import RayInitConfig
    from rayssl.data.build import build_shards_parallel
    from rayssl.train.launch import init_ray

    table = read_label_table(args.labels, storage_cfg) if args.labels else None  # a bad table fails before Ray starts
    init_ray(RayInitConfig())
    manifest = build_shards_parallel(args.path, args.out, args.shard_mb, storage_cfg, args.test_fraction, args.seed, table)
    print(f"shards: {manifest['build']['shards_written']} written, {manifest['build']['shards_skipped']} already complete")
    return manifest


def _finetune(args: argparse.Namespace) -> int:
    from rayssl.eval.classifier import write_test_report
    from rayssl.train.launch import run_finetune

    ft = load_config(FinetuneConfig, args.config, args.overrides)
    outcome = run_finetune(ft)
    report = write_test_report(ft, outcome.checkpoint, outcome.run_dir)
    per_class = ", ".join(f"{name} {'-' if acc is None else f'{acc:.3f}'}" for name, acc in report["per_class_accuracy"].items())
    print(
        f"\nfine-tuned {outcome.checkpoint}: validation accuracy {outcome.metrics.get('val_acc', float('nan')):.4f}, "
        f"test accuracy {report['accuracy']:.4f}, balanced accuracy {report['balanced_accuracy']:.4f} "
        f"({report['images']} test images: {report['test_images']})\nper-class test accuracy: {per_class}\n"
        f"confusion matrix and labels used: {outcome.run_dir}/test_report.json, confusion.png, labels.json"
    )
    never = report.get("classes_never_labelled")
    if never and never["images"]:
        print(
            f"classes never labelled {never['classes']} ({never['images']} test images): matched accuracy "
            f"{never['matched_accuracy']:.4f} (Hungarian; matching true -> predicted {never['matching']}), "
            f"accuracy {never['accuracy']:.4f}, predicted as one of them {never['predicted_among_them']:.4f}, "
            f"cross-entropy {never['cross_entropy']:.4f} nats"
        )
    return 0


def _quality(args: argparse.Namespace) -> int:
    from rayssl.quality.run import run_quality

    overrides = [
        *args.overrides,
        *([f"shards={args.shards}"] if args.shards else []),
        *([f"out={args.out}"] if args.out else []),
        *([f"storage.s3_endpoint={args.s3_endpoint}"] if args.s3_endpoint else []),
        *([f"features_from={args.features_from}"] if args.features_from else []),
    ]
    run_quality(load_config(QualityConfig, args.config, overrides))
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from rayssl.eval.robustness import run_robustness

    given = {"run": args.run, "target_shards": args.target_shards, "shards": args.shards, "out": args.out}
    overrides = [*args.overrides, *(f"{key}={value}" for key, value in given.items() if value)]
    run_robustness(load_config(RobustnessConfig, args.config, overrides))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from rayssl.tune.sweep import run_sweep

    run_sweep(load_config(SweepConfig, args.config, args.overrides))
    return 0


def _pretrain_or_eval(args: argparse.Namespace) -> int:
    """pretrain (then the frozen-feature evaluation unless --no-eval), or eval alone; both read a PretrainConfig."""
    cfg = load_config(PretrainConfig, args.config, args.overrides)
    from rayssl.eval.run import run_eval

    if args.command == "pretrain":
        from rayssl.train.launch import run_pretrain

        outcome = run_pretrain(cfg)
        if cfg.eval.after_pretrain and not args.no_eval:
            run_eval(cfg, outcome.checkpoint)
        return 0
    run_eval(cfg, args.checkpoint)
    return 0


def _inference(args: argparse.Namespace) -> int:
    storage_cfg = StorageConfig(s3_endpoint=args.s3_endpoint)
    if args.command == "export":
        from rayssl.inference.export import export_run

        info = export_run(args.run, args.out, storage_cfg)
        print(
            f"exported {info['checkpoint']} ({len(info['classes'])} classes, {info['input']['channels']}x{info['input']['image_size']}px) "
            f"-> {info['out']}: model.pt2 ({info['model_bytes'] / 1e6:.1f} MB, {info['export_s']:.1f} s), preprocess.json, predict.py"
        )
        return 0
    from rayssl.config import RayInitConfig
    from rayssl.train.launch import init_ray

    init_ray(RayInitConfig())
    if args.command == "predict":
        from rayssl.inference.predict import predict_run

        predict_run(
            args.run,
            args.input,
            args.out,
            split=args.split,
            top_k=args.top_k,
            batch_size=args.batch_size,
            actors=args.actors,
            storage_cfg=storage_cfg,
        )
    else:
        from rayssl.inference.embed import embed_run

        embed_run(args.run, args.input, args.out, split=args.split, batch_size=args.batch_size, actors=args.actors, storage_cfg=storage_cfg)
    return 0


def _select(args: argparse.Namespace) -> int:
    from rayssl.inference.select import SelectOptions, check_options, select_run

    opts = SelectOptions(
        args.budget, args.out, args.strategy, args.labels, args.embeddings, args.seed, args.purity_clusters, delta=args.delta
    )
    check_options(opts)  # before Ray starts
    if not args.embeddings:
        from rayssl.config import RayInitConfig
        from rayssl.train.launch import init_ray

        init_ray(RayInitConfig())
    summary = select_run(args.run, opts, StorageConfig(s3_endpoint=args.s3_endpoint))
    print(
        f"picked {summary['picked']} of {summary['embedded']} train images by {args.strategy} "
        f"({summary['already_labelled']} already labelled, {summary['clusters']} clusters): {summary['csv']}, {summary['png']}"
    )
    print("details: " + ", ".join(f"{k}={v}" for k, v in summary["details"].items()))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from rayssl.data import storage
    from rayssl.train.runs import list_runs, runs_table, show_run

    storage_cfg = StorageConfig(s3_endpoint=args.s3_endpoint)
    words = args.words
    if words[:1] == ["show"]:
        if len(words) != 2:
            raise ConfigError("usage: rayssl runs show NAME [--path PATH]")
        run_dir = words[1] if storage.is_remote(words[1]) else storage.join(args.path, words[1])
        if storage.exists(storage.join(run_dir, "label_efficiency.json"), storage_cfg):  # a sweep: its curves, refitted
            from rayssl.tune.report import show_sweep

            print(show_sweep(run_dir, storage_cfg, args.target_acc))
            return 0
        print(show_run(run_dir, args.path, storage_cfg, args.stale_after))
        return 0
    if len(words) > 1:
        raise ConfigError(f"rayssl runs takes one storage path, got {words}")
    root = words[0] if words else args.path
    found = list_runs(root, storage_cfg, args.stale_after)
    print(f"{len(found)} runs under {root}:\n{runs_table(found)}" if found else f"no runs under {root}")
    return 0


# Each subcommand's handler: the parsed arguments -> the exit status (errors raise; main() reports them).
_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "shards": _shards,
    "pretrain": _pretrain_or_eval,
    "finetune": _finetune,
    "sweep": _sweep,
    "runs": _runs,
    "quality": _quality,
    "robustness": _robustness,
    "eval": _pretrain_or_eval,
    "export": _inference,
    "predict": _inference,
    "embed": _inference,
    "select": _select,
}


if __name__ == "__main__":
    sys.exit(main())
