"""Retrieval, identification and verification scores of query features against gallery features.

Pure functions on tensors (any device); every feature is L2-normalised here, so similarity is the
cosine and the squared L2 distance is ``2 - 2 cos``. These are the three protocols of the
compatibility literature (see ``lifelong.analysis.compatibility``):

- closed-set **retrieval** (``retrieval_scores``): rank the whole gallery by cosine similarity for each
  query; CMC top-k (a match among the first ``k``) and mean average precision (BCT, OCA);
- **template identification** (``template_identification``): the gallery collapses to one template per
  class (mean of normalised features, re-normalised); a query is correct if its nearest template has
  its label ("top-1 1:N search", iamcl2r);
- pair **verification** (``verification_accuracy``): "same identity?" decided by thresholding the
  squared L2 distance of a pair, threshold chosen on 9 folds and scored on the 10th (insightface-style,
  as in the CL2R and CoReS code).

Scores are fractions in ``[0, 1]``; every function returns a Python ``float`` (or a dict of them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _check_pair(query: torch.Tensor, gallery: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor):
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query and gallery features must be (N, d) with the same d; got {tuple(query.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    if len(query_labels) != len(query) or len(gallery_labels) != len(gallery):
        raise ValueError(
            f"{len(query_labels)} query labels for {len(query)} queries, {len(gallery_labels)} gallery labels "
            f"for {len(gallery)} gallery items"
        )
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError("query and gallery must not be empty")


def retrieval_scores(
    query: torch.Tensor,
    gallery: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_labels: torch.Tensor,
    ks: Sequence[int] = (1, 5),
    leave_one_out: bool = False,
    batch_size: int = 1024,
) -> dict[str, float]:
    """CMC top-k accuracy and mean average precision of ranking the gallery by cosine similarity.

    For query ``q`` with relevant gallery items ``G_q`` (same label) and the gallery sorted by
    decreasing similarity (ties: lower gallery index first), with ``rel_r = 1`` if the item at rank
    ``r`` (1-based) is relevant:

    - ``top<k> = mean_q 1[min{r : rel_r} <= k]``;
    - ``map = mean_q AP_q``, ``AP_q = (1 / |G_q|) * sum_r rel_r * precision@r``.

    Queries without any relevant gallery item are left out of every mean (open-set queries of an
    unseen class cannot be scored); if none is left, ``ValueError``.

    Args:
        query: ``(Nq, d)`` query features.
        gallery: ``(Ng, d)`` gallery features.
        query_labels: ``(Nq,)`` class of each query.
        gallery_labels: ``(Ng,)`` class of each gallery item.
        ks: the CMC ranks to report.
        leave_one_out: query ``i`` and gallery item ``i`` are the same sample (query set = gallery set)
            and that pair is removed from the ranking; needs ``Nq == Ng``.
        batch_size: queries ranked at once (bounds memory at ``batch_size x Ng``).

    Returns:
        ``{"top1": ..., "top5": ..., "map": ...}`` (one ``top<k>`` per ``k``).

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.9]])
        >>> y = torch.tensor([0, 1, 1, 0])
        >>> scores = retrieval_scores(f, f, y, y, ks=(1, 2), leave_one_out=True)
        >>> {k: round(v, 4) for k, v in scores.items()}
        {'top1': 0.0, 'top2': 0.5, 'map': 0.4167}

    """
    _check_pair(query, gallery, query_labels, gallery_labels)
    if leave_one_out and len(query) != len(gallery):
        raise ValueError(f"leave_one_out needs query set = gallery set; got {len(query)} and {len(gallery)} items")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={list(ks)} must be a non-empty list of ranks >= 1")
    q, g = F.normalize(query.float(), dim=1), F.normalize(gallery.float(), dim=1)
    g_labels = gallery_labels.to(g.device)
    hits = {int(k): 0.0 for k in ks}
    ap_sum, scored = 0.0, 0
    ranks = torch.arange(1, len(g) + 1, device=g.device, dtype=torch.float64)  # (Ng,)
    for start in range(0, len(q), batch_size):
        sim = q[start : start + batch_size] @ g.T  # (b, Ng)
        relevant = query_labels[start : start + batch_size].to(g.device)[:, None] == g_labels[None, :]  # (b, Ng)
        if leave_one_out:
            rows = torch.arange(sim.shape[0], device=g.device)
            sim[rows, rows + start] = -torch.inf
            relevant[rows, rows + start] = False
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices
        rel = torch.gather(relevant, 1, order).double()  # (b, Ng) relevance by rank
        n_relevant = rel.sum(dim=1)
        keep = n_relevant > 0
        rel, n_relevant = rel[keep], n_relevant[keep]
        if len(rel) == 0:
            continue
        first = rel.argmax(dim=1) + 1  # rank of the first relevant item
        for k in hits:
            hits[k] += float((first <= k).sum())
        precision = rel.cumsum(dim=1) / ranks
        ap_sum += float(((precision * rel).sum(dim=1) / n_relevant).sum())
        scored += len(rel)
    if scored == 0:
        raise ValueError("no query has a relevant gallery item (same label); retrieval cannot be scored")
    out = {f"top{k}": hits[k] / scored for k in hits}
    out["map"] = ap_sum / scored
    return out


def class_templates(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One unit-norm template per class: the mean of the class's normalised features, re-normalised.

    Returns:
        ``(templates (C, d), classes (C,))`` with the classes sorted.

    Example:
        >>> t, c = class_templates(torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]]), torch.tensor([5, 7, 7]))
        >>> t.tolist(), c.tolist()
        ([[1.0, 0.0], [0.0, 1.0]], [5, 7])

    """
    classes, inverse = torch.unique(labels, return_inverse=True)
    normalised = F.normalize(features.float(), dim=1)
    sums = torch.zeros(len(classes), features.shape[1], device=features.device).index_add_(
        0, inverse.to(features.device), normalised
    )
    return F.normalize(sums, dim=1), classes


def template_identification(
    query: torch.Tensor, gallery: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor
) -> float:
    """Top-1 identification accuracy against class templates of the gallery (1:N search).

    ``acc = mean_q 1[argmax_c cos(q, T_c) = y_q]`` with ``T_c`` from :func:`class_templates` of the
    gallery. A query whose class has no template counts as a miss.

    Example:
        >>> g = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]])
        >>> q = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.1, 0.9]])
        >>> template_identification(q, g, torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]))
        0.6666666666666666

    """
    _check_pair(query, gallery, query_labels, gallery_labels)
    templates, classes = class_templates(gallery, gallery_labels)
    nearest = (F.normalize(query.float(), dim=1) @ templates.T).argmax(dim=1)  # (Nq,)
    predicted = classes[nearest]
    return float((predicted == query_labels.to(predicted.device)).double().mean())


def make_pairs(
    labels: torch.Tensor, n_positive: int, n_negative: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random pairs of distinct samples: ``n_positive`` of the same class, ``n_negative`` of different classes.

    Pairs are drawn uniformly (with replacement across pairs) and returned in a random interleaved
    order, so contiguous folds hold both kinds (as CL2R's ``create_pairs``).

    Returns:
        ``(first (P,), second (P,), same (P,) bool)`` indices into ``labels``.

    Raises:
        ValueError: a kind of pair cannot be formed (fewer than two samples in every class, or one class).

    """
    labels = labels.cpu()
    n = len(labels)
    firsts, seconds, sames = [], [], []
    for wanted, same in ((n_positive, True), (n_negative, False)):
        found = 0
        for _ in range(1000):
            if found >= wanted:
                break
            a = torch.randint(n, (4 * wanted + 16,), generator=generator)
            b = torch.randint(n, (4 * wanted + 16,), generator=generator)
            ok = (a != b) & ((labels[a] == labels[b]) == same)
            a, b = a[ok][: wanted - found], b[ok][: wanted - found]
            firsts.append(a)
            seconds.append(b)
            sames.append(torch.full((len(a),), same))
            found += len(a)
        if found < wanted:
            kind = "same-class" if same else "different-class"
            raise ValueError(f"cannot draw {wanted} {kind} pairs from labels with classes {labels.unique().tolist()}")
    first, second, same_all = torch.cat(firsts), torch.cat(seconds), torch.cat(sames)
    order = torch.randperm(len(first), generator=generator)
    return first[order], second[order], same_all[order]


def verification_accuracy(
    first: torch.Tensor,
    second: torch.Tensor,
    same: torch.Tensor,
    n_folds: int = 10,
    thresholds: torch.Tensor | np.ndarray | None = None,
) -> float:
    """Mean held-out accuracy of thresholding the squared L2 distance of normalised pair features.

    Pair ``p`` is predicted "same" when ``||f1_p - f2_p||^2 < t`` (features L2-normalised, so the
    distance lies in ``[0, 4]``). The pairs are cut into ``n_folds`` contiguous folds (no shuffling,
    as scikit-learn's ``KFold``); for each fold, ``t`` is the threshold of the grid with the highest
    accuracy on the other folds (the smallest on ties) and the fold's accuracy at ``t`` is recorded.
    The result is the mean over folds. Default grid: ``0, 0.001, ..., 3.999`` (insightface / CL2R).

    Args:
        first: ``(P, d)`` features of the first element of each pair (query model).
        second: ``(P, d)`` features of the second element (gallery model).
        same: ``(P,)`` bool, whether the pair shares the class.
        n_folds: number of folds, ``2 <= n_folds <= P``.
        thresholds: the candidate thresholds.

    Example:
        >>> f1 = torch.tensor([[1.0, 0.0]] * 4)
        >>> f2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
        >>> verification_accuracy(f1, f2, torch.tensor([True, False, True, False]), n_folds=2)
        1.0

    """
    if first.shape != second.shape or first.ndim != 2 or len(same) != len(first):
        raise ValueError(
            f"pairs need (P, d) features twice and P labels; got {tuple(first.shape)}, "
            f"{tuple(second.shape)} and {len(same)} labels"
        )
    if not 2 <= n_folds <= len(same):
        raise ValueError(f"n_folds={n_folds} must be between 2 and the number of pairs ({len(same)})")
    a, b = F.normalize(first.double(), dim=1), F.normalize(second.double(), dim=1)
    dist = (a - b).square().sum(dim=1).cpu().numpy()  # (P,)
    actual = same.cpu().numpy().astype(bool)
    grid = np.arange(0, 4, 0.001) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    folds = np.array_split(np.arange(len(dist)), n_folds)
    accuracies = []
    for held_out in folds:
        train = np.ones(len(dist), dtype=bool)
        train[held_out] = False
        best = grid[int(np.argmax(_accuracy_per_threshold(dist[train], actual[train], grid)))]
        accuracies.append(float(_accuracy_per_threshold(dist[held_out], actual[held_out], np.array([best]))[0]))
    return float(np.mean(accuracies))


def _accuracy_per_threshold(dist: np.ndarray, actual: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Accuracy of ``dist < t`` as the "same" prediction, for every ``t`` of ``grid`` (by sorting, not looping)."""
    positives, negatives = np.sort(dist[actual]), np.sort(dist[~actual])
    true_accepts = np.searchsorted(positives, grid, side="left")  # positives with dist < t
    false_accepts = np.searchsorted(negatives, grid, side="left")
    return (true_accepts + len(negatives) - false_accepts) / max(len(dist), 1)
