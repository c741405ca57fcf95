"""Linear centered kernel alignment (CKA): how similar two representations of the same inputs are.

Kornblith et al., "Similarity of Neural Network Representations Revisited" (ICML 2019) define, for
representations ``X`` (n x p) and ``Y`` (n x q) of the same n inputs and linear kernels
``K = X Xᵀ``, ``L = Y Yᵀ``::

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

It is 1 for identical representations and invariant to orthogonal transforms and isotropic scaling
of either side (not to arbitrary invertible linear maps).

Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?" (ICLR 2021) make it
work on minibatches: with the unbiased HSIC estimator of Song et al. (JMLR 2012), ``K̃`` and ``L̃``
the kernels with a zeroed diagonal and ``n >= 4``::

    HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))

and the minibatch CKA sums the three HSIC₁ terms over minibatches before taking the ratio::

    CKA_mb = Σ_b HSIC₁(K_b, L_b) / sqrt(Σ_b HSIC₁(K_b, K_b) · Σ_b HSIC₁(L_b, L_b))

HSIC₁ is a U-statistic, so every minibatch term is an unbiased estimate of the population HSIC and
the result does not depend on the batch size in expectation (unlike the biased estimator). Kim &
Han (CVPR 2023) use exactly this estimator for their layer-wise stability analysis.

Everything is computed in float64 (the kernels of wide layers have large entries and the estimator
subtracts terms of similar size). Degenerate input (a constant representation, for which the
denominator is zero or, by estimation noise on tiny batches, negative) gives NaN.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MinibatchCKA", "cka_from_hsic", "gram_linear", "hsic_unbiased", "linear_cka", "linear_cka_biased"]


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """The linear kernel ``X Xᵀ`` (float64) of ``n`` samples, each flattened to a vector.

    Example:
        >>> gram_linear(torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist()
        [[5.0, 11.0], [11.0, 25.0]]

    """
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    return flat @ flat.T


def _check_grams(k: torch.Tensor, l: torch.Tensor) -> int:  # noqa: E741
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape != l.shape:
        shapes = f"{tuple(k.shape)} and {tuple(l.shape)}"
        raise ValueError(f"HSIC needs two n x n kernel matrices of the same n; got {shapes}")
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 samples per batch; got {n}")
    return n


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """The unbiased HSIC estimator HSIC₁ (Song et al. 2012) of two ``n x n`` kernels, ``n >= 4``.

    Returns a float64 scalar tensor on the kernels' device (no host sync). It can be slightly
    negative when the true HSIC is near zero.

    Example:
        >>> x = torch.arange(12.0).reshape(6, 2) ** 2
        >>> k = gram_linear(x)
        >>> bool(hsic_unbiased(k, k) > 0)
        True

    """
    n = _check_grams(k, l)
    k = k.to(torch.float64).clone()
    l = l.to(torch.float64).clone()  # noqa: E741
    k.fill_diagonal_(0.0)
    l.fill_diagonal_(0.0)
    trace = (k * l).sum()  # tr(K̃ L̃), both symmetric
    sums = k.sum() * l.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (k.sum(dim=0) @ l.sum(dim=1))  # 1ᵀ K̃ L̃ 1
    return (trace + sums - cross) / (n * (n - 3))


def cka_from_hsic(xy: float | torch.Tensor, xx: float | torch.Tensor, yy: float | torch.Tensor) -> float:
    """``xy / sqrt(xx · yy)``; NaN when the denominator is not positive (a constant representation).

    Example:
        >>> cka_from_hsic(2.0, 4.0, 1.0), math.isnan(cka_from_hsic(0.0, 0.0, 1.0))
        (1.0, True)

    """
    xy, xx, yy = float(xy), float(xx), float(yy)
    if not xx > 0 or not yy > 0:
        return math.nan
    return xy / math.sqrt(xx * yy)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same ``n >= 4`` inputs, unbiased HSIC on the full batch.

    This is the reference the minibatch estimator agrees with when it sees the whole set as one batch.

    Args:
        x: ``(n, ...)`` first representation (flattened per sample).
        y: ``(n, ...)`` second representation of the same inputs, any width.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(50, 8, generator=g)
        >>> q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))  # an orthogonal matrix
        >>> round(linear_cka(x, x), 6), round(linear_cka(x, 3.0 * x @ q), 6)
        (1.0, 1.0)

    """
    k, l = gram_linear(x), gram_linear(y)  # noqa: E741
    return cka_from_hsic(hsic_unbiased(k, l), hsic_unbiased(k, k), hsic_unbiased(l, l))


def linear_cka_biased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA with the biased HSIC of Kornblith et al. (2019), in feature space.

    ``||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F · ||Ycᵀ Yc||_F)`` with column-centred ``Xc``, ``Yc``. It is
    what most papers before Nguyen et al. (2021) report; the unbiased estimate converges to the
    same population value as ``n`` grows.

    Example:
        >>> x = torch.randn(20, 5, generator=torch.Generator().manual_seed(1))
        >>> round(linear_cka_biased(x, -2.0 * x), 6)
        1.0

    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same samples; got {x.shape[0]} and {y.shape[0]} rows")
    xc = x.reshape(x.shape[0], -1).to(torch.float64)
    yc = y.reshape(y.shape[0], -1).to(torch.float64)
    xc, yc = xc - xc.mean(dim=0), yc - yc.mean(dim=0)

    def hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # tr(Ka Kb) of the centred kernels, unnormalised
        return torch.linalg.matrix_norm(b.T @ a) ** 2

    return cka_from_hsic(hsic(xc, yc), hsic(xc, xc), hsic(yc, yc))


class MinibatchCKA:
    """Minibatch linear CKA (Nguyen et al. 2021): HSIC₁ terms summed over batches, ratio taken at the end.

    Feed each minibatch (the same inputs seen by both representations) with ``update``, or its
    precomputed kernels with ``update_grams`` (used to keep a reference model's kernels instead of
    its activations); ``compute`` gives the CKA so far.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(64, 10, generator=g)
        >>> cka = MinibatchCKA()
        >>> for batch in x.split(16):
        ...     cka.update(batch, batch @ torch.diag(torch.arange(1.0, 11.0)))  # a non-isotropic rescaling
        >>> cka.batches, 0.0 < cka.compute() < 1.0
        (4, True)

    """

    def __init__(self) -> None:
        self.xy = 0.0
        self.xx = 0.0
        self.yy = 0.0
        self.batches = 0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add one minibatch: ``x`` and ``y`` are ``(b, ...)`` representations of the same ``b >= 4`` inputs."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must hold the same samples; got {x.shape[0]} and {y.shape[0]} rows")
        self.update_grams(gram_linear(x), gram_linear(y))

    def update_grams(
        self,
        k: torch.Tensor,
        l: torch.Tensor,  # noqa: E741
        hsic_kk: float | torch.Tensor | None = None,
    ) -> None:
        """Add one minibatch given its kernels; ``hsic_kk`` = HSIC₁(K, K) when already known."""
        self.xy += float(hsic_unbiased(k, l))
        self.xx += float(hsic_unbiased(k, k) if hsic_kk is None else hsic_kk)
        self.yy += float(hsic_unbiased(l, l))
        self.batches += 1

    def compute(self) -> float:
        """The CKA over every batch added so far (NaN before the first batch or for a constant input)."""
        return cka_from_hsic(self.xy, self.xx, self.yy)
