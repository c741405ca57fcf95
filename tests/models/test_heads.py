"""Heads: expansion keeps old classes exactly, cosine logits, multi-head masking and routing, half precision."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.models import HEADS, CosineHead, LinearHead, MultiHead, build_head, mask_value


def test_registered_heads():
    assert HEADS.names() == ["cosine", "dsimplex", "linear"]
    assert isinstance(build_head("linear", 4, 3), LinearHead)
    assert build_head("cosine", 4, 3, scale=2.0).scale == 2.0


@pytest.mark.parametrize("kind", [LinearHead, CosineHead])
def test_expand_keeps_old_outputs_exactly(kind):
    torch.manual_seed(0)
    head = kind(6, 3)
    x = torch.randn(5, 6)
    before = head(x).detach()
    old_params = {n: p.detach().clone() for n, p in head.named_parameters()}
    head.expand(7)
    after = head(x)
    assert head.num_classes == 7
    assert after.shape == (5, 7)
    for name, value in old_params.items():
        assert torch.equal(getattr(head, name)[:3], value)  # the old rows, bit for bit
    # the same numbers, up to the summation order BLAS picks for the wider matrix
    torch.testing.assert_close(after[:, :3], before, rtol=1e-6, atol=1e-7)
    assert not torch.equal(after[:, 3:], torch.zeros(5, 4))  # new rows are initialized, not zero
    after.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in head.parameters())


@pytest.mark.parametrize("kind", [LinearHead, CosineHead])
def test_expand_refuses_to_shrink_and_a_grown_checkpoint_reloads(kind):
    head = kind(4, 3)
    head.expand(3)  # no-op
    with pytest.raises(ValueError, match="shrink"):
        head.expand(2)
    head.expand(5)
    fresh = kind(4, 3)
    fresh.load_state_dict(head.state_dict())
    x = torch.randn(2, 4)
    assert fresh.num_classes == 5
    assert torch.equal(fresh(x), head(x))


def test_linear_head_is_an_affine_map():
    head = LinearHead(3, 2)
    x = torch.randn(4, 3)
    torch.testing.assert_close(head(x), x @ head.weight.T + head.bias)


def test_cosine_head_matches_hand_computed_cosines():
    head = CosineHead(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 2.0]]))
    features = torch.tensor([[3.0, 4.0], [0.0, -1.0]])
    # cos((3,4),(1,0)) = 3/5; cos((3,4),(2,2)) = 14/(5*sqrt(8)); cos((0,-1),(1,0)) = 0; cos((0,-1),(2,2)) = -1/sqrt(2)
    expected = torch.tensor([[0.6, 14 / (5 * math.sqrt(8))], [0.0, -1 / math.sqrt(2)]])
    torch.testing.assert_close(head(features), expected)
    head.scale = 10.0
    torch.testing.assert_close(head(features), 10 * expected)
    assert [n for n, _ in head.named_parameters()] == ["weight"]  # bias-free


def test_cosine_scale_must_be_positive():
    with pytest.raises(ValueError, match="scale"):
        CosineHead(2, 2, scale=0.0)
    with pytest.raises(ConfigError, match="model.head_kwargs"):
        build_head("cosine", 2, 2, scale=-1.0)
    with pytest.raises(ConfigError, match=r"model\.head_kwargs\.bias .*allowed: none"):
        build_head("linear", 2, 2, bias=False)


def two_task_mask() -> torch.Tensor:
    """Task 0 owns classes 0 and 1, task 1 owns classes 2 and 3 (4 classes in total)."""
    return torch.tensor([[True, True, False, False], [False, False, True, True]])


def test_multi_head_masks_other_tasks_and_routes_each_sample_to_its_head():
    torch.manual_seed(0)
    head = MultiHead(5, 4, n_tasks=2)
    x = torch.randn(4, 5)
    tasks = torch.tensor([0, 1, 1, 0])
    out = head(x, tasks, two_task_mask())
    assert out.shape == (4, 4)
    fill = mask_value(out.dtype)
    for i, t in enumerate(tasks.tolist()):
        own = two_task_mask()[t]
        torch.testing.assert_close(out[i, own], head.heads[t](x[i : i + 1])[0, own], rtol=1e-6, atol=1e-7)
        assert (out[i, ~own] == fill).all()
    assert math.isfinite(fill)
    assert fill < -1e30
    torch.nn.functional.cross_entropy(out, torch.tensor([1, 2, 3, 0])).backward()
    for t in (0, 1):
        grad = head.heads[t].weight.grad
        assert grad is not None
        assert (grad[~two_task_mask()[t]] == 0).all()  # masked classes get no gradient
        assert (grad[two_task_mask()[t]] != 0).any()


def test_multi_head_leaves_heads_of_absent_tasks_untouched_and_checks_labels():
    head = MultiHead(5, 4, n_tasks=3)
    out = head(torch.randn(2, 5), torch.tensor([2, 2]), torch.ones(3, 4, dtype=torch.bool))
    out.sum().backward()
    assert head.heads[0].weight.grad is None
    assert head.heads[2].weight.grad is not None
    with pytest.raises(ValueError, match="task label 3 has no head"):
        head(torch.randn(1, 5), torch.tensor([3]), torch.ones(3, 4, dtype=torch.bool))
    assert head(torch.randn(0, 5), torch.zeros(0, dtype=torch.long), torch.ones(3, 4, dtype=torch.bool)).shape == (0, 4)


def test_multi_head_can_use_cosine_heads():
    head = MultiHead(5, 4, n_tasks=2, make_head=lambda d, c: CosineHead(d, c, scale=2.0))
    out = head(torch.randn(3, 5), torch.tensor([0, 1, 0]), two_task_mask())
    own = out[out > mask_value(out.dtype)]
    assert own.numel() == 6
    assert (own.abs() <= 2.0 + 1e-6).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_multi_head_under_half_precision_autocast_has_no_nan(dtype):
    head = MultiHead(5, 4, n_tasks=2)
    x = torch.randn(6, 5, requires_grad=True)
    tasks = torch.tensor([0, 1, 0, 1, 1, 0])
    with torch.autocast("cpu", dtype=dtype):
        out = head(x, tasks, two_task_mask())
        log_probs = out.float().log_softmax(dim=1)
        loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 2, 1, 3, 2, 1]))
        kl = torch.nn.functional.kl_div(log_probs, log_probs.exp(), reduction="batchmean")  # 0 * log(0) terms
    assert out.dtype == dtype
    assert not out.isnan().any()
    assert out.isfinite().all()
    assert torch.isfinite(loss)
    assert torch.isfinite(kl)
    loss.backward()
    assert torch.isfinite(x.grad).all()
