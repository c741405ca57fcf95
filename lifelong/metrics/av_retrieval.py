"""Zero-shot audio<->video retrieval metrics and FLAVA's continual summaries (pure math).

A query's rank is the 1-based position of its first correct gallery item when the gallery is sorted by
decreasing similarity (ties broken pessimistically: equal scores count as ranked above). R@k is the share
of queries with rank <= k; the median rank is the median of the ranks.

>>> import torch
>>> sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.5]])
>>> positives = torch.eye(2, 3, dtype=torch.bool)
>>> first_positive_rank(sim, positives).tolist()
[1, 3]
>>> retrieval_scores(sim, positives, ks=(1, 5))
{'R@1': 0.5, 'R@5': 1.0, 'MdR': 2.0}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def first_positive_rank(sim: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """1-based rank ``(Q,)`` of the best-scored correct item per query; ``sim``/``positives`` are ``(Q, G)``."""
    if sim.shape != positives.shape:
        raise ValueError(f"sim {tuple(sim.shape)} and positives {tuple(positives.shape)} must have the same shape")
    if not bool(positives.any(1).all()):
        raise ValueError("every query needs at least one correct gallery item")
    best = sim.masked_fill(~positives, float("-inf")).max(1).values  # (Q,)
    return 1 + (sim.masked_fill(positives, float("-inf")) >= best[:, None]).sum(1)


def retrieval_scores(sim: torch.Tensor, positives: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``R@k`` for each ``k`` and the median rank ``MdR`` (mean of the two middle ranks for an even count)."""
    ranks = first_positive_rank(sim, positives).float()
    out = {f"R@{k}": float((ranks <= k).float().mean()) for k in ks}
    out["MdR"] = float(np.median(ranks.numpy()))
    return out


def cosine_similarity(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """``(Q, G)`` cosine similarities of ``(Q, D)`` and ``(G, D)`` embeddings."""
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    return q @ torch.nn.functional.normalize(gallery.float(), dim=-1).T


def average_final(matrix: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Mean over tasks of the scores after the last task: ``mean_k R[T-1, k]``.

    >>> average_final([[0.5, 0.1], [0.3, 0.6]])
    0.45
    """
    r = np.asarray(matrix, dtype=float)
    return float(round(r[-1].mean(), 12))


def flava_forgetting(matrix: np.ndarray | Sequence[Sequence[float]]) -> float:
    """FLAVA's forgetting: ``sum_k max_{t < T-1} (R[t, k] - R[T-1, k]) / (T - 1)`` over ALL ``T`` tasks.

    As in the official ``vggsound_retrieval_result.py``: the max runs over every checkpoint before the
    last (also those before task k was trained), and the last task's term is included, so it can be
    negative. ``R[t, k]`` is the score on task k after training task t. One task gives 0.

    >>> flava_forgetting([[0.5, 0.1], [0.3, 0.6]])
    -0.3
    """
    r = np.asarray(matrix, dtype=float)
    t = r.shape[0]
    if r.ndim != 2 or r.shape[1] != t:
        raise ValueError(f"forgetting needs a square T x T matrix, got shape {r.shape}")
    if t < 2:
        return 0.0
    return float(round((r[:-1].max(0) - r[-1]).sum() / (t - 1), 12))
