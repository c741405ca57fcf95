"""benchmarks/ocl_accuracy.py: the HPCR period rule, the paired gaps and merging per-seed result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def ocl():
    return load_benchmark("ocl_accuracy")


def row(seed: int, acc: float) -> dict:
    return {"seed": seed, "avg_acc": acc, "forgetting": 0.1, "samples_per_second": 100.0, "wall_seconds": 1.0}


def test_period_ends_each_task_on_a_whole_number_of_cycles(ocl):
    for per_class in (2000, 2600, 3800, 6000):
        steps = per_class * 2 // 10
        period = ocl.hpcr_period(per_class)
        assert steps % period == 0
        assert 250 <= period <= 750  # near the official 500
    assert ocl.hpcr_period(1000) == 200  # a task shorter than half a cycle is one cycle


def test_paired_gaps_pair_by_seed_not_by_position(ocl):
    runs = {
        "er": [row(1, 0.70), row(0, 0.60)],
        "pcr": [row(0, 0.65), row(1, 0.68)],  # +0.05 on seed 0, -0.02 on seed 1
    }
    gap = ocl.paired_gaps(runs)["pcr-er"]
    assert gap["mean"] == pytest.approx(0.015)
    assert gap["std"] == pytest.approx(0.07 / 2**0.5)
    assert (gap["positive"], gap["seeds"]) == (1, 2)
    assert "hpcr-pcr" not in ocl.paired_gaps(runs)


def result_file(tmp_path: Path, name: str, seeds: list[int], per_class: int | None = 2000) -> Path:
    setting = {
        "seeds": seeds,
        "methods": ["er", "pcr"],
        "per_class": per_class,
        "test_per_class": None,
        "backbone": "reduced_resnet18",
        "backbone_kwargs": {"nf": 20},
        "overrides": [],
    }
    runs = {"er": [row(s, 0.7 + s / 100) for s in seeds], "pcr": [row(s, 0.8) for s in seeds]}
    path = tmp_path / name
    path.write_text(json.dumps({"setting": setting, "complete": True, "wall_seconds": 10.0, "runs": runs}))
    return path


def test_merge_recomputes_the_summary_over_all_seeds(ocl, tmp_path):
    out = ocl.merge(
        [result_file(tmp_path, "a.json", [0, 1]), result_file(tmp_path, "b.json", [2])], tmp_path / "m.json"
    )
    assert out["setting"]["seeds"] == [0, 1, 2]
    assert out["summary"]["er"]["runs"] == 3
    assert out["summary"]["er"]["avg_acc_mean"] == pytest.approx(0.71)
    assert out["complete"]
    assert out["wall_seconds"] == 20.0
    assert json.loads((tmp_path / "m.json").read_text())["paired_gaps"]["pcr-er"]["positive"] == 3


def test_merge_refuses_a_repeated_seed_or_another_setting(ocl, tmp_path):
    a = result_file(tmp_path, "a.json", [0, 1])
    with pytest.raises(SystemExit, match="seed"):
        ocl.merge([a, result_file(tmp_path, "b.json", [1])], tmp_path / "m.json")
    with pytest.raises(SystemExit, match="setting differs"):
        ocl.merge([a, result_file(tmp_path, "c.json", [2], per_class=1000)], tmp_path / "m.json")
