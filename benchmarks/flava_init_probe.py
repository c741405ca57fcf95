"""Init-stage probe for ``benchmarks/flava.py``: the ``av_contrast`` objective in a plain loop, with its curve.

Trains a fresh ``cavmae_tiny`` on an ``av_digits`` init pool (all ten digits) with MAE on the masked clip +
``--weight`` x InfoNCE on the unmasked clip (the init stage's ``av_contrast``; Adam, betas (0.95, 0.999),
wd 5e-7, optional linear warm-up) and prints, every ``--eval-every`` steps, the mean InfoNCE of the last 50
steps, the class-level R@1 (a2v, v2a) of the stream's test sets (the benchmark's default stream: the
en/es/fr/ru voices, held-out digit images, gallery = all five tasks; chance 0.10) and the mean pairwise
cosine of the video embeddings (near 1: collapsed). Used to find init settings that leave ln(batch) before
paying for the engine's init stage (results: ``benchmarks/results/flava.md``).

    OMP_NUM_THREADS=1 python benchmarks/flava_init_probe.py --lr 3e-4 --steps 3000            # 32 + 32 tokens
    OMP_NUM_THREADS=1 python benchmarks/flava_init_probe.py --big --visible 0.2 --copies 48 --lr 3e-4 --steps 2000
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader

from lifelong.data import build_av_stream
from lifelong.models.av_models import build_av_model
from lifelong.models.cavmae import info_nce


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--voices", default="en,es,fr,ru", help="init pool voices (asterisk names or espeak:...)")
    p.add_argument("--copies", type=int, default=24, help="augmented copies per (voice, digit)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--weight", type=float, default=1.0, help="InfoNCE weight")
    p.add_argument("--tau", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--big", action="store_true", help="256 + 256 tokens (4 frames, patch 4, 128 x 32 fbank at 7.5 ms)")
    p.add_argument("--visible", type=float, default=0.45, help="visible share of the masked clip (MAE)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    layout = dict(frames=4, image_size=32, target_frames=128, mel_bins=32, frame_shift_ms=7.5) if a.big else {}
    model_layout = dict(frames=4, patch_size=4, audio_frames=128) if a.big else {}
    pool_params = dict(tasks=[list(range(10))], train_voices=a.voices.split(","), train_copies=a.copies, **layout)
    pool = build_av_stream("av_digits", pool_params, a.seed)
    test = build_av_stream("av_digits", dict(train_copies=1, **layout), a.seed)
    train_set = ConcatDataset([e.dataset for e in pool.train])
    test_set = ConcatDataset([e.dataset for e in test.test])
    overrides = dict(contrastive_weight=a.weight, tau=a.tau, visible_ratio=a.visible, **model_layout)
    model = build_av_model("cavmae_tiny", overrides)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.95, 0.999), weight_decay=5e-7)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup) if a.warmup else 1.0)

    def evaluate() -> tuple[float, float, float]:
        model.eval()
        emb_a, emb_v, groups = [], [], []
        with torch.no_grad():
            for b in DataLoader(test_set, batch_size=100):
                ea, ev = model.embed_clip(b["video"], b["audio"])
                emb_a.append(ea)
                emb_v.append(ev)
                groups.append(b["group"])
        model.train()
        ea, ev, g = F.normalize(torch.cat(emb_a), dim=-1), F.normalize(torch.cat(emb_v), dim=-1), torch.cat(groups)
        s = ea @ ev.T
        a2v = (g[s.argmax(1)] == g).float().mean().item()
        v2a = (g[s.T.argmax(1)] == g).float().mean().item()
        return a2v, v2a, (ev @ ev.T).mean().item()

    step, nces, start = 0, [], time.time()
    r = evaluate()
    print(f"step 0: a2v {r[0]:.3f} v2a {r[1]:.3f} video cosine {r[2]:.3f}", flush=True)
    while step < a.steps:
        for b in DataLoader(train_set, batch_size=a.bs, shuffle=True, drop_last=True):
            out = model.pretrain_forward(b["video"], b["audio"])
            codes = model.full_codes(b["video"], b["audio"])
            emb = {m: model.unimodal_embedding(codes[m], m) for m in ("a", "v")}
            nce = info_nce(emb["a"], emb["v"], a.tau)
            loss = out["mae_a"] + out["mae_v"] + a.weight * nce
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            nces.append(nce.item())
            if step % a.eval_every == 0 or step == a.steps:
                r = evaluate()
                recent = sum(nces[-50:]) / len(nces[-50:])
                print(
                    f"step {step}: nce {recent:.3f} a2v {r[0]:.3f} v2a {r[1]:.3f} video cosine {r[2]:.3f} "
                    f"({time.time() - start:.0f} s)",
                    flush=True,
                )
            if step >= a.steps:
                break


if __name__ == "__main__":
    main()
