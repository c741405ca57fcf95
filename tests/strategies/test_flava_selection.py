"""Invariants of FLAVA's patch selection (lifelong.strategies.flava_selection) and of the masked CAV-MAE forward."""

import pytest
import torch

from lifelong.models.cavmae import CAVMAE, CAVMAEConfig, gather_tokens
from lifelong.strategies import flava_selection as sel


def test_topk_and_summary_by_hand():
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.9]])
    assert sel.topk_mask(scores, 2).tolist() == [[False, True, False, True]]
    q = torch.arange(8.0).reshape(1, 1, 4, 2)  # one head, 4 queries of dim 2
    summary = sel.query_summary(scores, q, sel.topk_mask(scores, 2))
    expected = (0.5 * q[0, 0, 1] + 0.9 * q[0, 0, 3]) / 1.4
    assert torch.allclose(summary[0, 0], expected)


def test_prune_probability_zero_outside_candidates_and_without_memory():
    torch.manual_seed(0)
    b, h, nq, nk, d = 3, 2, 6, 8, 4
    logits, keys = torch.randn(b, h, nq, nk), torch.randn(b, h, nk, d)
    w = torch.rand(b, nq).softmax(1)
    cq, ck = sel.topk_mask(w, 3), sel.topk_mask(torch.rand(b, nk), 4)
    assert torch.equal(sel.prune_probability(logits, w, cq, ck, keys, None), torch.zeros(b, nk))
    p = sel.prune_probability(logits, w, cq, ck, keys, torch.randn(b, h, d))
    assert torch.all(p[~ck] == 0)
    assert torch.all(p[ck] > 0)
    assert torch.all(p <= 1)
    # one head, hand-computed: sigmoid(<qbar, k_j>/sqrt(d) - importance-weighted mean logit of candidate queries)
    past = torch.randn(b, 1, d)
    p1 = sel.prune_probability(logits[:, :1], w, cq, ck, keys[:, :1], past)
    wc = w * cq / (w * cq).sum(1, keepdim=True)
    s_cur = (wc[:, :, None] * logits[:, 0]).sum(1)
    s_past = (past[:, 0, None, :] * keys[:, 0]).sum(-1) / d**0.5
    assert torch.allclose(p1, torch.sigmoid(s_past - s_cur) * ck, atol=1e-6)


def test_weighted_order_puts_pruned_last_and_follows_weights():
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(200, 10, generator=gen) + 0.01
    pruned = torch.rand(200, 10, generator=gen) < 0.3
    order = sel.weighted_order(w * ~pruned, gen)
    for row in range(200):
        n_keep = int((~pruned[row]).sum())
        assert set(order[row, :n_keep].tolist()) == set((~pruned[row]).nonzero().squeeze(1).tolist())
    assert all(sorted(r.tolist()) == list(range(10)) for r in order)
    # first draw frequency ~ weight share (weights 1 : 3)
    firsts = sel.weighted_order(torch.tensor([[1.0, 3.0]]).expand(4000, -1), gen)[:, 0]
    assert abs(float((firsts == 1).float().mean()) - 0.75) < 0.04


def test_video_selection_keeps_exactly_half_and_no_pruned_when_possible():
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(5, 32, generator=gen)
    pruned = sel.topk_mask(torch.rand(5, 32, generator=gen), 10)
    out = sel.select_video(w, pruned, 16, gen)
    assert out.shape == (5, 16)
    for row in range(5):
        assert len(set(out[row].tolist())) == 16
        assert not pruned[row, out[row]].any()


@pytest.mark.parametrize("with_pruning", [False, True])
def test_audio_selection_is_exact_and_chunked(with_pruning):
    gen = torch.Generator().manual_seed(2)
    n_time, n_freq, chunk, keep = 8, 4, 2, 16
    w = torch.rand(6, n_time * n_freq, generator=gen)
    pruned = torch.zeros_like(w, dtype=torch.bool)
    if with_pruning:
        pruned = torch.bernoulli(torch.full(w.shape, 0.2), generator=gen).bool()
    out = sel.select_audio(w, pruned, n_time, n_freq, chunk, keep, gen)
    assert out.shape == (6, keep)
    for row in range(6):
        tokens = set(out[row].tolist())
        assert len(tokens) == keep
        if not with_pruning:  # keep is a multiple of the chunk size: whole time chunks only
            chunks = {t // n_freq // chunk for t in tokens}
            assert len(chunks) == keep // (chunk * n_freq)
            assert all(c * chunk * n_freq + i in tokens for c in chunks for i in range(chunk * n_freq))
        else:
            assert not pruned[row, out[row]].any()


def test_audio_boundary_chunk_trimmed_next_to_accepted_neighbour():
    # keep = 1.5 chunks: chunk 1 has all the weight, chunk 2 the rest; the partial chunk must touch chunk 1.
    n_time, n_freq, chunk = 6, 1, 2
    w = torch.tensor([[0.0, 0.0, 10.0, 10.0, 1.0, 1.0]])
    out = sel.select_audio(w, torch.zeros_like(w, dtype=torch.bool), n_time, n_freq, chunk, 3)
    assert out.tolist() == [[2, 3, 4]]


def test_mae_targets_inside_selection_and_positions_on_grid():
    torch.manual_seed(0)
    model = CAVMAE(CAVMAEConfig.tiny())
    video, audio = torch.randn(4, 2, 3, 32, 32), torch.randn(4, 64, 32)
    selection = {"v": torch.stack([torch.randperm(32)[:16] for _ in range(4)])}
    selection["a"] = torch.stack([torch.randperm(32)[:16] for _ in range(4)])
    out = model.pretrain_forward(video, audio, selection)
    for m in ("v", "a"):
        vis, tgt = out[f"visible_{m}"], out[f"target_{m}"]
        assert vis.shape[1] == int(0.2 * 32)
        assert vis.shape[1] + tgt.shape[1] == 16
        for row in range(4):
            allowed = set(selection[m][row].tolist())
            assert set(vis[row].tolist()) | set(tgt[row].tolist()) == allowed  # dropped tokens never targets
            assert not set(vis[row].tolist()) & set(tgt[row].tolist())
    # embedding a token at grid index i uses pos[i]: same patch, different index -> differs by pos difference
    patches = model.patchify_video(video)
    idx = torch.tensor([[3, 7]])
    tok = model.embed(patches[:1], idx, "v")
    assert torch.allclose(
        tok[0, 0] - model.proj["v"](patches[0, 3]) - model.modality["v"][0, 0], model.pos["v"][0, 3], atol=1e-5
    )
    assert torch.equal(gather_tokens(patches, idx.expand(4, -1))[:, 1], patches[:, 7])
    # grid order: token f*g*g + r*g + c is frame f, row r, col c
    assert torch.equal(patches[1, 16 + 2 * 4 + 1].reshape(3, 8, 8), video[1, 1, :, 16:24, 8:16])
    assert torch.equal(model.patchify_audio(audio)[2, 5 * 4 + 2].reshape(8, 8), audio[2, 40:48, 16:24])


def test_selection_at_the_papers_token_counts_keeps_its_invariants():
    """ViT-B layout: 784 video tokens (4 frames of 14x14) and 512 audio tokens (64 time x 8 frequency patches),
    keep 0.5 of each, audio chunks of 4 time patches (0.64 s, 1/16 of the clip), pruning of about a quarter."""
    gen = torch.Generator().manual_seed(3)
    b, n_video, n_time, n_freq, chunk = 4, 784, 64, 8, 4
    w_v, w_a = torch.rand(b, n_video, generator=gen), torch.rand(b, n_time * n_freq, generator=gen)
    pruned_v = torch.bernoulli(torch.full(w_v.shape, 0.25), generator=gen).bool()
    pruned_a = torch.bernoulli(torch.full(w_a.shape, 0.25), generator=gen).bool()
    video = sel.select_video(w_v, pruned_v, 392, gen)
    audio = sel.select_audio(w_a, pruned_a, n_time, n_freq, chunk, 256, gen)
    assert video.shape == (b, 392)
    assert audio.shape == (b, 256)
    for row in range(b):
        assert len(set(video[row].tolist())) == 392  # enough unpruned tokens: none pruned is kept
        assert not pruned_v[row, video[row]].any()
        assert len(set(audio[row].tolist())) == 256
        assert not pruned_a[row, audio[row]].any()
        assert audio[row].min() >= 0
        assert audio[row].max() < n_time * n_freq
    # without pruning the audio selection is 8 whole chunks (256 = 8 chunks x 4 time x 8 frequency patches)
    whole = sel.select_audio(w_a, torch.zeros_like(pruned_a), n_time, n_freq, chunk, 256, gen)
    for row in range(b):
        chunks = {t // n_freq // chunk for t in whole[row].tolist()}
        assert len(chunks) == 8
    # importance drives the choice: with no pruning, video keeps mostly high-importance tokens
    video_top = sel.select_video(w_v, torch.zeros_like(pruned_v), 392, gen)
    median = w_v.median(dim=1, keepdim=True).values
    assert float((torch.gather(w_v, 1, video_top) > median).float().mean()) > 0.55
