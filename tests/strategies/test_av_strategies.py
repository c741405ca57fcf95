"""Audio-video strategies: registered like every other, state round trips, the init objectives by hand."""

import pytest
import torch

from lifelong.models.cavmae import CAVMAE, info_nce
from lifelong.strategies import STRATEGIES, build_strategy, strategy_names
from lifelong.strategies.av_replay import embedding_mse

AV = strategy_names("audio_video")


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(n, 2, 3, 32, 32, generator=g), "audio": torch.randn(n, 64, 32, generator=g)}


def make(name):
    params = {"memory_size": 8} if "memory_size" in STRATEGIES.get(name).__init__.__code__.co_varnames else {}
    return build_strategy(name, **params)


def test_the_audio_video_strategies_are_registered_apart_from_the_classification_ones():
    assert set(AV) == {"av_finetune", "av_er", "av_derpp", "flava", "av_contrast", "avm_warmup"}
    assert not set(AV) & set(strategy_names("classifier"))


@pytest.mark.parametrize("name", AV)
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    model = CAVMAE()
    a = make(name)
    a.setup(model, None)
    for step in range(2):
        out = a.training_loss(model, batch(seed=step))
        assert torch.isfinite(out.loss)
        a.after_training_step(model, batch(seed=step), out)
    b = make(name)
    b.setup(model, None)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b.state_dict()[k]), k
        else:  # the memory's extra state (counters, generator)
            assert str(v) == str(b.state_dict()[k]), k


def test_derpp_anchors_the_replayed_embeddings():
    torch.manual_seed(0)
    model = CAVMAE()
    strategy = build_strategy("av_derpp", memory_size=8, alpha=0.5)
    strategy.setup(model, None)
    first = strategy.training_loss(model, batch(seed=0))
    assert "der" not in first.parts  # empty memory: nothing to anchor
    strategy.after_training_step(model, batch(seed=0), first)
    assert len(strategy.memory) == 4
    out = strategy.training_loss(model, batch(seed=1))
    assert out.parts["der"] > 0
    # by hand: stored vs current embeddings of the same (replayed) clips
    stored = strategy.memory.sample(4)
    assert stored["emb_a"].shape == (4, model.config.embed_dim)
    same = {"emb_a": torch.cat([stored["emb_a"], stored["emb_a"]]), "emb_v": torch.cat([stored["emb_v"]] * 2)}
    assert embedding_mse(same, stored, 4) == pytest.approx(0.0)


def test_unmasked_contrast_uses_the_full_clip():
    torch.manual_seed(0)
    model = CAVMAE()
    b = batch()
    out = build_strategy("av_contrast").training_loss(model, b)
    codes = model.full_codes(b["video"], b["audio"])
    emb = {m: model.unimodal_embedding(codes[m], m) for m in ("a", "v")}
    assert out.parts["nce"] == pytest.approx(info_nce(emb["a"], emb["v"], model.config.tau).item(), rel=1e-5)


def test_avm_warmup_gives_the_backbone_no_gradient():
    torch.manual_seed(0)
    model = CAVMAE()
    warmup = build_strategy("avm_warmup")
    warmup.setup(model, None)
    warmup.training_loss(model, batch(8)).loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in warmup.avm.parameters())
