"""The ``lifelong`` command: run, show, list, compare, sync, report (``pretrain`` is an alias of ``run``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lifelong import logs, shipped, signals
from lifelong.errors import ConfigError, DataError, NonFiniteLossError, RunInterrupted, TrackingError
from lifelong.version import __version__


def _parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: use comma-separated integers, e.g. 0,1,2") from None


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q``, accepted before the command and after it (``lifelong -q run x``, ``lifelong run x -q``)."""
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug lines and other packages' logs"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings, errors and results only"
    )


def verbosity(args: argparse.Namespace) -> int:
    """The ``lifelong.logs`` verbosity of the command line."""
    if getattr(args, "verbose", False):
        return logs.VERBOSE
    return logs.QUIET if getattr(args, "quiet", False) else logs.NORMAL


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("config", help="experiment YAML, or the name of a shipped one (`lifelong list`), e.g. quickstart")
    run.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. strategy.name=er optim.lr=0.05")
    run.add_argument("--seeds", type=_parse_seeds, default=None, help="comma-separated seeds (default: the config's)")
    _add_verbosity(run)
    run.add_argument(
        "--allow-code",
        metavar="MODULE",
        action="append",
        default=[],
        help="let the config name code (module:callable) from MODULE (default: only avalanche.benchmarks)",
    )
    run.add_argument("--trust-config", action="store_true", help="let the config name code from any module")
    run.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue a stopped run from its last checkpoint: its run directory or MLflow run id (same config)",
    )


def _add_sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("config", help="experiment YAML")
    sweep.add_argument("overrides", nargs="*", help="dotlist overrides shared by every run")
    sweep.add_argument(
        "--grid", nargs="+", default=[], metavar="KEY=V1,V2", help="swept keys, e.g. strategy.name=er,hpcr"
    )
    sweep.add_argument("--seeds", type=_parse_seeds, default=None, help="comma-separated seeds (default: the config's)")
    sweep.add_argument("--jobs", type=int, default=1, help="runs at a time (local: one GPU each, or cores / jobs)")
    sweep.add_argument("--launcher", choices=["local", "slurm"], default="local", help="submitit executor")
    sweep.add_argument("--partition", default=None, help="SLURM partition")
    sweep.add_argument("--time", type=int, default=24 * 60, help="minutes per job (SLURM --time; default 1440)")
    sweep.add_argument("--gpus", type=int, default=0, help="SLURM: GPUs per job")
    sweep.add_argument("--allow-code", metavar="MODULE", action="append", default=[], help="as for `run`")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifelong", description="Continual-learning experiments from YAML.")
    parser.add_argument("--version", action="version", version=f"lifelong {__version__}")
    _add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_arguments(
        sub.add_parser("run", help="run an experiment: lifelong run X.yaml [key=value ...] [--seeds 0,1,2]")
    )
    _add_sweep_arguments(
        sub.add_parser("sweep", help="a grid x seeds as nested runs of one parent, on submitit (local or SLURM)")
    )
    show = sub.add_parser("show", help="print the resolved config")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*")
    sub.add_parser("list", help="shipped experiments; registered strategies, datasets, scenarios, backbones, heads")
    compare = sub.add_parser("compare", help="mean ± std over seeds of the stream metrics, per config (digest)")
    compare.add_argument("experiment", help="experiment name (the YAML's `name`)")
    compare.add_argument(
        "--uri", default=None, help="tracking URI (default: MLFLOW_TRACKING_URI or <output dir>/mlflow.db)"
    )
    compare.add_argument("--output-dir", default="runs", help="the runs' output_dir, whose store is the default (runs)")
    compare.add_argument("--out", default=None, help="markdown file (default: <output dir>/<experiment>/compare.md)")
    compare.add_argument(
        "--by", default=None, metavar="KEY", help="group by this param (e.g. strategy.name), not by config digest"
    )
    compare.add_argument(
        "--grid",
        nargs="?",
        const="latest",
        default=None,
        metavar="PARENT_RUN_ID",
        help="a sweep as a grid (its two first keys): the latest sweep, or the one with this parent run id",
    )
    compare.add_argument("--metric", default="avg_acc", help="the stream metric of the --grid table (avg_acc)")
    ui = sub.add_parser("ui", help="the MLflow UI on the runs store, opened on an experiment's runs")
    ui.add_argument("experiment", nargs="?", default=None, help="experiment name (default: the latest run's)")
    ui.add_argument("--uri", default=None, help="tracking URI (default: MLFLOW_TRACKING_URI or <output dir>/mlflow.db)")
    ui.add_argument("--output-dir", default="runs", help="the runs' output_dir, whose store is the default (runs)")
    ui.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    sync = sub.add_parser("sync", help="upload what a run kept locally while the tracking server was away")
    sync.add_argument("run_dir", help="the run directory (it holds tracking/run.json)")
    sync.add_argument("--uri", default=None, help="tracking URI (default: the one the run used)")
    pretrain = sub.add_parser("pretrain", help="alias of `run` (audio-video pretraining runs like any other)")
    _add_run_arguments(pretrain)
    report = sub.add_parser("report", help="one self-contained HTML page of a run or of an experiment's runs")
    report.add_argument("targets", nargs="+", help="run folder(s) or experiment folder(s), e.g. runs/quickstart")
    report.add_argument("--out", default=None, help="HTML file (default: <first target>/report.html)")
    report.add_argument("--log", action="store_true", help="also log the page as an MLflow artifact of each run")
    report.add_argument("--uri", default=None, help="tracking URI for --log (default: the runs' store)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``key=value`` overrides may also follow options (``run x.yaml --seeds 0,1 a=b``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; user errors print one message and exit with 2."""
    args = parse_args(argv)
    logs.setup(verbosity(args))
    try:
        commands = {"run": cmd_run, "show": cmd_show, "list": cmd_list, "compare": cmd_compare, "report": cmd_report}
        commands.update(sync=cmd_sync, pretrain=cmd_run, ui=cmd_ui, sweep=cmd_sweep)
        return commands[args.command](args)
    except (ConfigError, DataError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        if getattr(err, "rank", 0) == 0:
            print(f"error: {err}\n(the experiences evaluated so far are in the run folder and MLflow)", file=sys.stderr)
            print(_nan_hint(args), file=sys.stderr)
        return 1
    except RunInterrupted as err:
        signals.ignore_stop_signals()
        if getattr(err, "rank", 0) == 0:
            print(f"{err}.", _resume_hint(args, err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:  # a second Ctrl+C, or signals that could not be handled (not the main thread)
        signals.ignore_stop_signals()
        if getattr(err, "rank", 0) == 0:
            print("interrupted.", _resume_hint(args, err), file=sys.stderr)
        return 130


def _nan_hint(args: argparse.Namespace) -> str:
    """After a NaN loss: a new run with a lower learning rate (a resume keeps the config, so it would diverge again)."""
    if args.command != "run":
        return ""
    from lifelong import config

    lr = config.load(args.config, args.overrides).optim.lr
    kept = [item for item in args.overrides if not item.startswith("optim.lr=")]
    command = " ".join(["lifelong run", args.config, *kept, f"optim.lr={lr / 10:g}"])
    return f"A resume keeps the config (and would diverge again); start a new run with a lower rate, e.g.:\n  {command}"


def _resume_hint(args: argparse.Namespace, err: BaseException) -> str:
    """Where the last checkpoint is and the command that continues from it."""
    run_dir, checkpointed = getattr(err, "run_dir", None), getattr(err, "checkpointed", None)
    if args.command not in ("run", "pretrain"):
        return ""
    if (run_dir is None or checkpointed is None) and args.resume is None:
        return "It stopped before training began: there is no checkpoint to resume; run it again."
    if run_dir is None or checkpointed is None:
        command = " ".join(["lifelong run", args.config, *args.overrides, "--resume", str(args.resume)])
        return f"The run keeps its last checkpoint; continue with:\n  {command}"
    where = "the evaluation before training" if checkpointed < 0 else f"experience {checkpointed}"
    command = " ".join(["lifelong run", args.config, *args.overrides, "--resume", str(run_dir)])
    return f"The last checkpoint is from {where}; continue with:\n  {command}"


def load_checked(args: argparse.Namespace):  # noqa: ANN201
    """The command line's config, with its registry names and parameters checked (before torch is imported)."""
    from lifelong import config
    from lifelong.catalog import check_config

    cfg = config.load(args.config, args.overrides)
    check_config(cfg)
    return cfg


def cmd_show(args: argparse.Namespace) -> int:
    from lifelong import config

    print(config.to_yaml(load_checked(args)), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lifelong.safety import ANY, allow_code

    allow_code([ANY] if args.trust_config else args.allow_code)
    cfg = load_checked(args)
    from lifelong.run import check_names, run_seeds

    check_names(cfg)
    quiet = verbosity(args) == logs.QUIET
    results = run_seeds(cfg, args.seeds if args.seeds else [cfg.seed], quiet=quiet, resume=args.resume)
    if results[0].rank > 0:  # DDP: rank 0 reports
        return 0
    for result in results:
        print()
        print(format_result(result))
    if cfg.tracking.enabled:
        print("\n" + _ui_hint(cfg))
    return 0


def _ui_hint(cfg) -> str:  # noqa: ANN001
    """How to open the experiment's runs in the MLflow UI (``--uri`` when the store is not the default one)."""
    from lifelong.tracking import experiment_id_of, resolve_uri
    from lifelong.ui import runs_url

    uri = resolve_uri(cfg.tracking.uri, cfg.output_dir)
    if uri == resolve_uri(None):
        option = ""
    elif uri == resolve_uri(None, cfg.output_dir):
        option = f" --output-dir {cfg.output_dir}"
    else:
        option = f" --uri {uri}"
    command = f"lifelong ui {cfg.experiment_name}{option}"
    hint = f"MLflow UI: {command}"
    if not option and Path("Justfile").is_file():  # `just ui` needs the repository's Justfile (not installed ones)
        hint = f"MLflow UI: just ui {cfg.experiment_name}   (or: {command})"
    try:
        experiment_id = experiment_id_of(uri, cfg.experiment_name)
    except Exception:  # noqa: BLE001 - a hint never fails a finished run
        return hint
    return hint + f"\n  opens {runs_url('127.0.0.1', 5000, experiment_id)}"


def cmd_ui(args: argparse.Namespace) -> int:
    from lifelong.tracking import resolve_uri
    from lifelong.ui import serve

    store = resolve_uri(args.uri, args.output_dir)
    return serve(store, args.experiment, args.host, args.port, browser=not args.no_browser)


def cmd_sync(args: argparse.Namespace) -> int:
    from lifelong.tracking import sync_run

    report = sync_run(Path(args.run_dir), args.uri)
    parts = [f"{report['metrics']} metric values"]
    parts += [name for name in ("params", "artifacts") if report[name]]
    if report["status"]:
        parts.append(f"status {report['status']}")
    print(f"run {report['run_id']} at {report['uri']}: sent " + ", ".join(parts))
    if report.get("died"):
        print("its process is gone (killed without a chance to end the run): marked FAILED; continue it with --resume")
    elif report["journal_status"] not in ("FINISHED", "FAILED", "KILLED"):
        print("the run has not ended (still running, or killed with SIGKILL): sync again after it ends or resumes")
    return 0


def format_result(result) -> str:  # noqa: ANN001
    """The primary score's matrix (accuracy, or a2v R@1) and the stream metrics as a terminal table."""
    tensor = result.matrix.as_tensor()
    n = tensor.shape[1]
    primary = result.matrices.names[0]
    corner = "after \\ on" if primary == "acc" else f"{primary}: after \\ on"
    lines = [
        f"{result.config.run_name}  (run dir: {result.run_dir})",
        corner + " " + "".join(f"{f'exp{j}':>8}" for j in range(n)),
    ]
    if result.matrix.initial is not None:
        lines.append(f"{'init':<11}" + "".join(f"{v:8.3f}" for v in result.matrix.initial))
    for i in range(tensor.shape[0]):
        lines.append(f"{f'exp{i}':<11}" + "".join(f"{float(v):8.3f}" for v in tensor[i]))
    shown = {k: v for k, v in result.metrics.items() if primary == "acc" or k.startswith(f"{primary}/")}
    lines.append("  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from lifelong.analysis import ANALYSES
    from lifelong.data import AV_DATASETS, DATASETS, SCENARIOS
    from lifelong.metrics.evaluators import EVALUATORS
    from lifelong.models import AV_MODELS, BACKBONES, HEADS, backbone_names
    from lifelong.strategies import STRATEGIES, strategy_names

    print("experiments (lifelong run NAME [key=value ...]):")
    for name in shipped.shipped_names():
        print(f"  {name:<30} {shipped.describe(name)}")
    for title, registry, names in (
        ("strategies", STRATEGIES, strategy_names("classifier")),
        ("datasets", DATASETS, DATASETS.names()),
        ("scenarios", SCENARIOS, SCENARIOS.names()),
        ("backbones", BACKBONES, backbone_names()),
        ("heads", HEADS, HEADS.names()),
        ("audio-video strategies", STRATEGIES, strategy_names("audio_video")),
        ("audio-video datasets (stream.dataset, with stream.params)", AV_DATASETS, AV_DATASETS.names()),
        ("audio-video models (model.backbone)", AV_MODELS, AV_MODELS.names()),
        ("evaluators (chosen by the model)", EVALUATORS, EVALUATORS.names()),
        ("analyses", ANALYSES, ANALYSES.names()),
    ):
        print(f"{title}:")
        for name in names:
            doc = registry.describe(name) if name in registry else "any timm model by name, e.g. timm:resnet18"
            print(f"  {name:<22} {doc}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lifelong.report import default_report_path, log_report, write_report

    out = Path(args.out) if args.out else default_report_path(args.targets)
    if args.log:
        path, logged = log_report(args.targets, out, uri=args.uri)
    else:
        path, logged = write_report(args.targets, out), []
    print(f"report: {path.resolve().as_uri()}")
    if logged:
        print(f"logged as an MLflow artifact of {len(logged)} run(s)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lifelong.compare import parse_grid
    from lifelong.launch import LaunchOptions
    from lifelong.safety import allow_code
    from lifelong.sweep import sweep

    try:
        grid = parse_grid(args.grid)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    allow_code(args.allow_code)
    from lifelong import config

    seeds = args.seeds or [config.load(args.config, args.overrides).seed]
    options = LaunchOptions(args.launcher, args.jobs, timeout_min=args.time, partition=args.partition, gpus=args.gpus)
    outcome = sweep(args.config, args.overrides, grid, seeds, options, args.allow_code)
    print(f"sweep: {len(outcome.jobs)} runs, {len(outcome.failed)} failed, parent MLflow run {outcome.parent}")
    for job, failure in outcome.failed:
        print(f"  failed: {' '.join(job.overrides)} seed={job.seed} ({job.run_dir}): {str(failure)[-500:]}")
    if outcome.failed:
        print("rerun the same command to start new runs, or resume one with `lifelong run ... --resume <run dir>`")
    return 1 if outcome.failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lifelong.compare import compare_table, grid_table, parse_grid, rows_from_records
    from lifelong.tracking import resolve_uri, stream_metric_table, sweep_grid

    uri = resolve_uri(args.uri, args.output_dir)
    parent, grid = (
        sweep_grid(uri, args.experiment, None if args.grid == "latest" else args.grid) if args.grid else (None, "")
    )
    rows = rows_from_records(stream_metric_table(uri, args.experiment, parent))
    if not rows:
        print(f"experiment {args.experiment!r} has no finished runs yet")
        return 1
    try:
        if parent:
            keys = parse_grid(grid.split())
            table = f"{args.metric} (mean ± sd over seeds) of sweep {parent}\n\n" + grid_table(rows, keys, args.metric)
        else:
            table = compare_table(rows, by=args.by)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    print(table)
    out = Path(args.out) if args.out else Path(args.output_dir) / args.experiment / "compare.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {args.experiment}\n\n{table}\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
