"""The d-Simplex fixed classifier (CoReS, CL2R, HOC) and the retrieval features of a model.

Pernici et al., "Regular Polytope Networks" (IEEE TNNLS 2021) and Biondi et al., "CoReS: Compatible
Representations via Stationarity" (TPAMI 2023): the class prototypes are the ``K`` vertices of a
regular simplex in ``d = K - 1`` dimensions, fixed before the first task and never trained. A
bias-free learnable projection maps backbone features to ``d`` dimensions; the logits are the dot
products with the prototypes, with no bias and no logit scale (the feature norm acts as the inverse
temperature). Since the classifier never moves, features learned at different times stay
comparable ("stationary"): the basis of the compatibility methods in ``lifelong.strategies.stationary``
and ``lifelong.strategies.hoc``.

Construction (as in the three official repositories): start from the standard basis
``e_1 .. e_{K-1}`` plus the vertex ``alpha * 1`` with ``alpha = (1 - sqrt(K)) / (K - 1)``, which puts
all ``K`` points at pairwise distance ``sqrt(2)``; centre them at the origin and scale every row to
unit norm. The result has unit-norm rows with pairwise cosine ``-1 / (K - 1)``.

Retrieval features (``retrieval_features``): the ``d``-dim projection output when the model's head is a
``DSimplexHead`` (what the official code retrieves with), otherwise the backbone features. Callers
L2-normalise them before comparing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.models.heads import HEADS


def dsimplex_prototypes(num_classes: int, dim: int | None = None) -> torch.Tensor:
    """The ``(K, d)`` float32 matrix whose rows are the vertices of a centred regular simplex.

    Rows have unit norm and every pair has cosine ``-1 / (K - 1)``. With ``dim > K - 1`` the simplex
    lives in the first ``K - 1`` coordinates and the others are zero.

    Args:
        num_classes: ``K >= 2``, the number of vertices (classes reserved up front).
        dim: ``d``, the feature dimension; ``None`` means ``K - 1``.

    Raises:
        ValueError: ``K < 2`` or ``d < K - 1`` (a regular simplex of ``K`` vertices needs ``K - 1`` dimensions).

    Example:
        >>> p = dsimplex_prototypes(3)
        >>> p.shape
        torch.Size([3, 2])
        >>> [round(v, 4) for v in (p @ p.T)[0].tolist()]
        [1.0, -0.5, -0.5]

    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"a d-Simplex needs at least 2 classes, got classes={num_classes!r}")
    n = num_classes - 1
    dim = n if dim is None else dim
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < n:
        raise ValueError(f"a d-Simplex of K={num_classes} classes needs d >= K - 1 = {n} dimensions, got dim={dim!r}")
    vertices = torch.zeros(n + 1, n, dtype=torch.float64)
    vertices[:n] = torch.eye(n, dtype=torch.float64)
    vertices[n] = (1 - math.sqrt(n + 1)) / n
    vertices -= vertices.mean(dim=0)
    vertices /= vertices.norm(dim=1, keepdim=True)
    return F.pad(vertices, (0, dim - n)).to(torch.float32)


def check_simplex(prototypes: torch.Tensor, atol: float = 1e-4) -> None:
    """Raise ``ValueError`` unless the rows of ``prototypes`` form a centred regular unit simplex.

    Checked: ``K >= 2`` rows, ``d >= K - 1`` columns, unit norms and all pairwise cosines equal to
    ``-1 / (K - 1)`` within ``atol``.
    """
    if prototypes.ndim != 2 or prototypes.shape[0] < 2:
        raise ValueError(f"d-Simplex prototypes must be a (K, d) matrix with K >= 2, got {tuple(prototypes.shape)}")
    k, d = prototypes.shape
    if d < k - 1:
        raise ValueError(f"d-Simplex prototypes of K={k} classes need d >= K - 1 = {k - 1}, got d={d}")
    gram = prototypes.detach().double() @ prototypes.detach().double().T  # (K, K)
    expected = torch.full_like(gram, -1.0 / (k - 1))
    expected.fill_diagonal_(1.0)
    error = float((gram - expected).abs().max())
    if error > atol:
        raise ValueError(
            f"d-Simplex prototypes violate the geometry (unit rows, pairwise cosine -1/(K-1) = {-1 / (k - 1):.6f}): "
            f"max deviation {error:.3g} > {atol}"
        )


class DSimplexHead(nn.Module):
    """Fixed d-Simplex classifier: ``logits = W_S · (P f)`` with a learnable bias-free ``P`` and a frozen ``W_S``.

    ``prototypes`` (``W_S``, ``(K, d)``) is a buffer, so it is saved in checkpoints but never handed to
    an optimizer (no weight decay, no update). ``projection`` (``P``, ``d x in_dim``) is the only
    parameter. The head cannot grow: all ``K`` classes are reserved when it is built.

    Args:
        in_dim: width of the backbone features.
        num_classes: ``K``, the number of reserved classes (at least the stream's classes).
        dim: ``d``, the projection width; ``None`` means ``K - 1``.

    """

    prototypes: torch.Tensor

    def __init__(self, in_dim: int, num_classes: int, dim: int | None = None) -> None:
        super().__init__()
        prototypes = dsimplex_prototypes(num_classes, dim)
        self.in_dim = in_dim
        self.projection = nn.Linear(in_dim, prototypes.shape[1], bias=False)
        self.register_buffer("prototypes", prototypes)

    @property
    def num_classes(self) -> int:
        """``K``: number of reserved classes (logits)."""
        return self.prototypes.shape[0]

    @property
    def dim(self) -> int:
        """``d``: width of the projected features."""
        return self.prototypes.shape[1]

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Project ``(B, in_dim)`` backbone features to the ``(B, d)`` features the simplex classifies."""
        return self.projection(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim)`` backbone features to ``(B, K)`` logits (unnormalised dot products)."""
        return F.linear(self.embed(features), self.prototypes)

    def check_classes(self, classes: Iterable[int], key: str = "labels") -> None:
        """Raise ``ValueError`` if a class id is outside ``0 .. K - 1`` (a class the simplex did not reserve)."""
        values = [int(c) for c in classes]
        bad = sorted({c for c in values if not 0 <= c < self.num_classes})
        if bad:
            raise ValueError(
                f"{key} {bad[:10]} exceed the d-Simplex head's K={self.num_classes} reserved classes (0..K-1); "
                "reserve more with model.head_kwargs.classes"
            )

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        stored = state_dict.get(prefix + "prototypes")
        if stored is not None:
            if tuple(stored.shape) != tuple(self.prototypes.shape):
                raise ValueError(
                    f"checkpoint holds d-Simplex prototypes of shape {tuple(stored.shape)}, this head has "
                    f"{tuple(self.prototypes.shape)}; build the model with the same K and d"
                )
            check_simplex(stored)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, classes={self.num_classes}, dim={self.dim}"


@HEADS.register("dsimplex")
def dsimplex(in_dim: int, num_classes: int, /, classes: int | None = None, dim: int | None = None) -> DSimplexHead:
    """Fixed d-Simplex classifier (CoReS/CL2R/HOC): learnable bias-free projection to d = K - 1, frozen prototypes.

    Args:
        in_dim: width of the backbone features.
        num_classes: classes of the stream.
        classes: ``K``, classes to reserve (``model.head_kwargs.classes``, e.g. 1024 as in HOC); at least
            ``num_classes``; ``None`` reserves exactly the stream's classes.
        dim: projection width ``d >= K - 1`` (``None``: ``K - 1``).

    """
    reserved = num_classes if classes is None else classes
    if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < num_classes:
        raise ValueError(f"classes={classes!r} must be an integer >= the stream's {num_classes} classes")
    return DSimplexHead(in_dim, reserved, dim)


def dsimplex_head(model: nn.Module) -> DSimplexHead | None:
    """The model's head if it is a ``DSimplexHead``, else ``None``."""
    head = getattr(model, "head", None)
    return head if isinstance(head, DSimplexHead) else None


def require_dsimplex(model: nn.Module, who: str) -> DSimplexHead:
    """The model's ``DSimplexHead``; a ``ValueError`` telling the user to set ``model.head=dsimplex`` otherwise."""
    head = dsimplex_head(model)
    if head is None:
        found = type(getattr(model, "head", None)).__name__
        raise ValueError(
            f"strategy {who!r} trains against a fixed d-Simplex classifier, but the model's head is {found}; "
            "set model.head=dsimplex"
        )
    return head


def retrieval_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features a model retrieves with (not normalised).

    The ``(B, d)`` projection output for a d-Simplex head, else the ``(B, feature_dim)`` backbone features.
    """
    features = model.features(x)  # type: ignore[operator]
    head = dsimplex_head(model)
    return head.embed(features) if head is not None else features
