"""Task- and domain-incremental runs end to end on real data (Split / Permuted Digits)."""

from __future__ import annotations

from lifelong import config
from lifelong.run import run


def finish(path: str, tmp_path, *overrides: str):
    cfg = config.load(path, ["tracking.enabled=false", f"output_dir={tmp_path}", "train.epochs=3", *overrides])
    return run(cfg, quiet=True)


def test_task_incremental_multi_head_barely_forgets(tmp_path):
    multi = finish("experiments/digits_task_incremental.yaml", tmp_path)
    single = finish("experiments/digits_task_incremental.yaml", tmp_path, "model.multi_head=false")
    # With task labels each head only separates its own 2 classes: fine-tuning keeps most of it.
    assert multi.metrics["avg_acc"] > 0.85
    # One shared head over all 10 classes forgets the earlier tasks.
    assert multi.metrics["avg_acc"] - single.metrics["avg_acc"] > 0.3


def test_domain_incremental_sees_all_classes_each_experience(tmp_path):
    result = finish("experiments/digits_permuted.yaml", tmp_path)
    assert result.matrix.n_experiences == 4
    # The initial (untrained) model is near chance; after training on a permutation it is far above.
    assert max(result.matrix.initial) < 0.3
    assert all(result.matrix.row(i)[i] > 0.7 for i in range(4))
