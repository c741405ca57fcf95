"""Online Split Fashion-MNIST on the real data: ER with a 500-sample memory must beat fine-tuning."""

from __future__ import annotations

import pytest

from lifelong import config
from lifelong.data.datasets import FASHION_MNIST_SYSTEM_DIR
from lifelong.run import run

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_SYSTEM_DIR.exists(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)"
)

# Subsampled for CI time: 2000 of the 6000 training images per class (2000 online steps per run).
COMMON = ["stream.train_per_class=2000", "stream.test_per_class=500", "tracking.enabled=false"]


def final_accuracy(name: str, tmp_path) -> dict[str, float]:
    cfg = config.load(f"experiments/fmnist_online_{name}.yaml", [*COMMON, f"output_dir={tmp_path}"])
    return run(cfg, quiet=True).metrics


def test_er_beats_finetune_by_ten_points(tmp_path):
    finetune = final_accuracy("finetune", tmp_path)
    er = final_accuracy("er", tmp_path)
    chance = 0.1
    assert finetune["avg_acc"] > chance
    assert er["avg_acc"] > chance + 0.2
    assert er["avg_acc"] - finetune["avg_acc"] >= 0.10, (er, finetune)
    # fine-tuning forgets almost everything it learnt; replay forgets clearly less
    assert finetune["forgetting"] > er["forgetting"] + 0.1
