"""Continual-learning metrics: pure functions on accuracy matrices and the matrix a run fills.

``functional`` holds the math (average accuracy, average incremental accuracy, forgetting, BWT,
FWT, intransigence); ``AccuracyMatrix`` collects ``R[i, j]`` during a run and derives the stream
metrics from it. Nothing here imports another ``lifelong`` layer.
"""

from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.metrics.functional import (
    FORGETTING_MODES,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    backward_transfer_per_experience,
    forgetting,
    forgetting_curve,
    forgetting_per_experience,
    forward_transfer,
    forward_transfer_per_experience,
    incremental_accuracies,
    intransigence,
    intransigence_per_experience,
    performance_drop,
    stream_metrics,
)

__all__ = [
    "FORGETTING_MODES",
    "AccuracyMatrix",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "backward_transfer_per_experience",
    "forgetting",
    "forgetting_curve",
    "forgetting_per_experience",
    "forward_transfer",
    "forward_transfer_per_experience",
    "incremental_accuracies",
    "intransigence",
    "intransigence_per_experience",
    "performance_drop",
    "stream_metrics",
]
