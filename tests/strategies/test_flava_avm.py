"""The AVM learns where the aligned patches are: on av_synthetic its top-50% tokens hit the sprite / tone."""

import torch

from lifelong.data.av_synthetic import av_synthetic
from lifelong.models.cavmae import CAVMAE, CAVMAEConfig
from lifelong.strategies.flava import FLAVA, avm_loss, joint_pass, joint_tokens, modality_codes
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
        loss = avm_loss(flava.avm, model, *modality_codes(model, train.video[idx], train.audio[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the AVM loss never changes the backbone
    assert torch.equal(before, sum(p.detach().clone().sum() for p in model.parameters()))
    hit_v, hit_a = _hit_rate(flava, model, test)
    # a random half of the tokens contains half of the aligned ones on average
    assert hit_v > 0.8, hit_v
    assert hit_a > 0.8, hit_a


class _RecordingAVM(torch.nn.Module):
    """Stands in for the AVM: remembers the tokens it is given and answers logit 0."""

    def forward(self, a, v):
        self.seen = (a, v)
        return a.new_zeros(len(a))


def test_avm_negatives_are_mismatched_pairs_encoded_jointly():
    torch.manual_seed(0)
    model = CAVMAE(CAVMAEConfig.tiny()).eval()
    data = av_synthetic(tasks=((0, 1),), train_per_task=8, test_per_task=2, seed=0).train[0]
    a_codes, v_codes = modality_codes(model, data.video, data.audio)
    avm = _RecordingAVM()
    loss = avm_loss(avm, model, a_codes, v_codes)
    assert abs(float(loss) - float(torch.log(torch.tensor(2.0)))) < 1e-6  # logit 0 against 4 ones and 4 zeros
    a_seen, v_seen = avm.seen
    a_pos, v_pos = joint_pass(model, a_codes[:4], v_codes[:4])
    a_neg, v_neg = joint_pass(model, a_codes[4:], v_codes[4:].roll(1, 0))
    assert torch.allclose(a_seen, torch.cat([a_pos, a_neg]), atol=1e-6)
    assert torch.allclose(v_seen, torch.cat([v_pos, v_neg]), atol=1e-6)
    # not the shortcut: the matched pairs' joint tokens with the videos rolled afterwards
    a_all, v_all = joint_tokens(model, data.video, data.audio)
    assert not torch.allclose(a_seen[4:], a_all[4:], atol=1e-4)
    assert not torch.allclose(v_seen[4:], v_all[4:].roll(1, 0), atol=1e-4)


def test_avm_loss_reuses_the_matched_tokens_the_step_already_has():
    torch.manual_seed(0)
    model = CAVMAE(CAVMAEConfig.tiny()).eval()
    data = av_synthetic(tasks=((0, 1),), train_per_task=8, test_per_task=2, seed=0).train[0]
    a_codes, v_codes = modality_codes(model, data.video, data.audio)
    fresh, reused = _RecordingAVM(), _RecordingAVM()
    avm_loss(fresh, model, a_codes, v_codes)
    avm_loss(reused, model, a_codes, v_codes, matched=joint_pass(model, a_codes, v_codes))
    for got, expected in zip(reused.seen, fresh.seen, strict=True):
        assert torch.allclose(got, expected, atol=1e-6)
