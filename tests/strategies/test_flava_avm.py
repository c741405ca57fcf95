"""The AVM learns where the aligned patches are: on av_synthetic its top-50% tokens hit the sprite / tone."""

import torch

from lifelong.data.av_synthetic import av_synthetic
from lifelong.models.cavmae import CAVMAE, CAVMAEConfig
from lifelong.strategies.flava import FLAVA, avm_loss, joint_tokens
from lifelong.strategies.flava_selection import topk_mask


def _hit_rate(flava, model, data):
    a, v = joint_tokens(model, data.video, data.audio)
    s = flava.scores(a, v)
    hits_v = (topk_mask(s["I_v"], 16) & data.extras["video_gt"]).sum() / data.extras["video_gt"].sum()
    hits_a = (topk_mask(s["I_a"], 16) & data.extras["audio_gt"]).sum() / data.extras["audio_gt"].sum()
    return float(hits_v), float(hits_a)


def test_avm_selects_aligned_patches_after_short_training():
    torch.manual_seed(0)
    stream = av_synthetic(tasks=((0, 1, 2, 3),), train_per_task=128, test_per_task=64, seed=0)
    model = CAVMAE(CAVMAEConfig.tiny()).eval()
    flava = FLAVA(memory_size=8, temperature=0.4)
    flava.setup(model, None)
    opt = torch.optim.Adam(flava.avm.parameters(), lr=3e-3)
    train, test = stream.train[0], stream.test[0]
    before = sum(p.detach().clone().sum() for p in model.parameters())
    for _step in range(150):
        idx = torch.randint(len(train), (32,))
        a, v = joint_tokens(model, train.video[idx], train.audio[idx])
        loss = avm_loss(flava.avm, a, v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the AVM loss never changes the backbone
    assert torch.equal(before, sum(p.detach().clone().sum() for p in model.parameters()))
    hit_v, hit_a = _hit_rate(flava, model, test)
    # a random half of the tokens contains half of the aligned ones on average
    assert hit_v > 0.8, hit_v
    assert hit_a > 0.8, hit_a
