"""MLflow tracking (DESIGN §6): the only package that imports mlflow.

``tracker`` holds the run's tracker, sync and the compare table; ``extras`` what a run logs besides
metrics (stream input, logged models, system metrics, parent runs); the MLflow-free store helpers live
in :mod:`lifelong.stores` and are re-exported here.

Default store: ``sqlite:///<cwd>/runs/mlflow.db`` with artifacts under ``runs/artifacts``;
``MLFLOW_TRACKING_URI`` or an explicit ``uri`` override it (an ``http://`` server works the same).
Every value is journaled when it is logged (:mod:`lifelong.journal`) and sent in batches, so
tracking never dominates a training step. With checkpoints, evaluation values are fsynced before
the checkpoint that covers them is committed and sent only after that commit; a resumed run drops
what the journal holds beyond its checkpoint unless MLflow has it already, and never sends a
(key, step) twice. A run whose process died is marked FAILED by ``lifelong sync`` or ``--resume``.

A tracking server that cannot be reached when a run starts is an error (:class:`TrackingError`,
before any training). One that goes away later does not stop training: every value is journaled
in the run directory first (:mod:`lifelong.journal`), sending is retried every
``RETRY_SECONDS``, and ``lifelong sync <run dir>`` (:func:`sync_run`) uploads whatever is left.
"""

from lifelong.stores import (
    HTTP_LIMITS,
    START_TIMEOUT,
    check_store,
    default_uri,
    git_commit,
    http_limits,
    is_local,
    package_git_info,
    resolve_uri,
    store_lock,
    tracking_error,
    unreachable,
)
from lifelong.tracking.extras import (
    SystemMetrics,
    download_model,
    end_parent_run,
    experiment_id_of,
    log_model_folder,
    log_stream_input,
    logged_model,
    logged_models_of_run,
    send_pending_extras,
    show_as_model_training,
    start_parent_run,
)
from lifelong.tracking.tracker import (
    EXPERIMENT_TAGS,
    FLUSH_EVERY,
    NOT_ARTIFACTS,
    PARENT_ROLE,
    RETRY_SECONDS,
    ROLE_TAG,
    SEND_SECONDS,
    SWEEP_ROLE,
    TERMINAL,
    MlflowTracker,
    client_for,
    ensure_experiment,
    mark_dead_run,
    now_ms,
    run_dir_tag,
    stream_metric_table,
    sweep_grid,
    sync_run,
)

__all__ = [
    "EXPERIMENT_TAGS",
    "FLUSH_EVERY",
    "HTTP_LIMITS",
    "MlflowTracker",
    "NOT_ARTIFACTS",
    "PARENT_ROLE",
    "RETRY_SECONDS",
    "ROLE_TAG",
    "SEND_SECONDS",
    "START_TIMEOUT",
    "SWEEP_ROLE",
    "SystemMetrics",
    "TERMINAL",
    "check_store",
    "client_for",
    "default_uri",
    "download_model",
    "end_parent_run",
    "ensure_experiment",
    "experiment_id_of",
    "git_commit",
    "http_limits",
    "is_local",
    "log_model_folder",
    "log_stream_input",
    "logged_model",
    "logged_models_of_run",
    "mark_dead_run",
    "now_ms",
    "package_git_info",
    "resolve_uri",
    "run_dir_tag",
    "send_pending_extras",
    "show_as_model_training",
    "start_parent_run",
    "store_lock",
    "stream_metric_table",
    "sweep_grid",
    "sync_run",
    "tracking_error",
    "unreachable",
]
