"""Linear CKA: invariances, the unbiased HSIC against its U-statistic definition, minibatch vs full batch."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lifelong.metrics.cka import (
    MinibatchCKA,
    gram_linear,
    hsic_unbiased,
    linear_cka,
    linear_cka_biased,
)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(randn(d, d, seed=seed))
    return q


def related_pair(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two representations that share part of their signal (CKA strictly between 0 and 1)."""
    x = randn(n, 6, seed=seed)
    y = torch.cat([x[:, :3] @ randn(3, 4, seed=seed + 1), randn(n, 5, seed=seed + 2)], dim=1)
    return x, y


def hsic_by_definition(k: torch.Tensor, l: torch.Tensor) -> float:  # noqa: E741
    """Song et al.'s U-statistic written out: averages over distinct index tuples of
    k_ij l_ij + k_ij l_qr - 2 k_ij l_iq (population HSIC = E[k l] + E[k] E[l] - 2 E[k_ij l_iq])."""
    n = k.shape[0]
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2)]
    triples = list(itertools.permutations(range(n), 3))
    quads = list(itertools.permutations(range(n), 4))
    term1 = sum(float(k[i, j] * l[i, j]) for i, j in pairs) / len(pairs)
    term2 = sum(float(k[i, j] * l[q, r]) for i, j, q, r in quads) / len(quads)
    term3 = sum(float(k[i, j] * l[i, q]) for i, j, q in triples) / len(triples)
    return term1 + term2 - 2 * term3


@pytest.mark.parametrize("n", [4, 5, 7])
def test_closed_form_hsic_equals_the_u_statistic(n):
    x, y = related_pair(n, seed=n)
    k, l = gram_linear(x), gram_linear(y)  # noqa: E741
    assert float(hsic_unbiased(k, l)) == pytest.approx(hsic_by_definition(k, l), rel=1e-9, abs=1e-9)


def test_cka_of_a_representation_with_itself_is_one():
    x = randn(30, 12)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka_biased(x, x) == pytest.approx(1.0, abs=1e-12)
    cka = MinibatchCKA()
    for batch in x.split(10):
        cka.update(batch, batch)
    assert cka.compute() == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = related_pair(50)
    base = linear_cka(x, y)
    assert 0.05 < base < 0.95  # a case where invariance is not trivially 1 = 1
    moved_x = 0.3 * x @ orthogonal(x.shape[1], seed=7)
    moved_y = 5.0 * y @ orthogonal(y.shape[1], seed=8)
    assert linear_cka(moved_x, moved_y) == pytest.approx(base, rel=1e-9)
    assert linear_cka_biased(moved_x, moved_y) == pytest.approx(linear_cka_biased(x, y), rel=1e-9)
    # ... but not to a non-isotropic rescaling of the features
    stretched = x * torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64)
    assert abs(linear_cka(stretched, y) - base) > 1e-3


def test_invariant_to_translation_of_the_features():
    """The unbiased HSIC centres implicitly: adding a constant vector to every sample changes nothing."""
    x, y = related_pair(30)
    assert linear_cka(x + 3.0, y - randn(1, y.shape[1], seed=9)) == pytest.approx(linear_cka(x, y), rel=1e-9)


def test_symmetric_and_accepts_unflattened_activations():
    x, y = related_pair(20)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    maps = x.reshape(20, 2, 3, 1)  # e.g. (B, C, H, W) feature maps, flattened inside
    assert linear_cka(maps, y) == pytest.approx(linear_cka(x, y), rel=1e-12)


def test_minibatch_over_every_subset_equals_the_full_batch_exactly():
    """HSIC₁ is a U-statistic: its average over all size-m subsets is the full-sample HSIC₁, so the
    minibatch CKA accumulated over every subset of size m equals the full-batch CKA."""
    x, y = related_pair(8, seed=3)
    for m in (4, 6):
        cka = MinibatchCKA()
        for subset in itertools.combinations(range(8), m):
            index = torch.tensor(subset)
            cka.update(x[index], y[index])
        assert cka.batches == math.comb(8, m)
        assert cka.compute() == pytest.approx(linear_cka(x, y), rel=1e-9)


def test_one_batch_equals_full_batch_and_batches_estimate_it():
    x, y = related_pair(2000, seed=5)
    one = MinibatchCKA()
    one.update(x, y)
    assert one.compute() == pytest.approx(linear_cka(x, y), rel=1e-12)
    batched = MinibatchCKA()
    for bx, by in zip(x.split(200), y.split(200), strict=True):
        batched.update(bx, by)
    assert batched.batches == 10
    # unbiased per batch: no drift with the batch size (the biased estimator would be pulled up)
    assert batched.compute() == pytest.approx(linear_cka(x, y), abs=0.02)
    assert linear_cka_biased(x, y) == pytest.approx(linear_cka(x, y), abs=0.02)


def test_precomputed_reference_kernels_give_the_same_result():
    x, y = related_pair(24)
    direct, cached = MinibatchCKA(), MinibatchCKA()
    for bx, by in zip(x.split(8), y.split(8), strict=True):
        direct.update(bx, by)
        k = gram_linear(bx)
        cached.update_grams(k, gram_linear(by), hsic_kk=hsic_unbiased(k, k))
    assert cached.compute() == pytest.approx(direct.compute(), rel=1e-12)


def test_degenerate_input_and_bad_shapes():
    x = randn(10, 3)
    assert math.isnan(linear_cka(torch.zeros(10, 3), x))  # a dead layer has no defined similarity
    assert math.isnan(MinibatchCKA().compute())
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(x[:3], x[:3])
    with pytest.raises(ValueError, match="same n"):
        hsic_unbiased(gram_linear(x), gram_linear(x[:5]))
    with pytest.raises(ValueError, match="same samples"):
        MinibatchCKA().update(x, x[:5])
