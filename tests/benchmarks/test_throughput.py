"""benchmarks/throughput.py: the JSON records (one real, tiny ER timing through both drivers) and their medians."""

from __future__ import annotations

import json

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def throughput():
    return load_benchmark("throughput")


def test_json_holds_one_record_per_backbone_and_method(throughput, tmp_path):
    out = tmp_path / "t.json"
    argv = ["--backbones", "mlp", "--methods", "er,pcr", "--per-class", "3", "--repeats", "2", "--json", str(out)]
    evaluation = ["--eval-batch-sizes", "7,50", "--eval-per-class", "3", "--eval-json", str(tmp_path / "e.json")]
    throughput.main([*argv, *evaluation, "--skip-avalanche"])
    records = json.loads(out.read_text())
    assert [(r["backbone"], r["method"]) for r in records] == [("mlp", "er"), ("mlp", "pcr")]
    for r in records:
        assert set(r["samples_per_s"]) == {"plain", "lifelong"}
        assert all(v > 0 for v in r["samples_per_s"].values())
        assert r["ratio_to_plain"] == pytest.approx(r["samples_per_s"]["lifelong"] / r["samples_per_s"]["plain"])
        assert [len(v) for v in r["repeats"].values()] == [2, 2]
        assert 0 <= r["load_average"]["min"] <= r["load_average"]["max"]
    evaluations = json.loads((tmp_path / "e.json").read_text())
    assert [(e["eval_batch_size"], e["images"], len(e["repeats"])) for e in evaluations] == [(7, 30, 2), (50, 30, 2)]
    assert all(e["seconds"] > 0 for e in evaluations)


def test_record_reports_the_median_of_the_repeats(throughput):
    runs = {"plain": [10.0, 30.0, 20.0], "lifelong": [5.0, 25.0, 15.0]}
    r = throughput.record("reduced_resnet18", "hpcr", runs, [0.5])
    assert r["samples_per_s"] == {"plain": 20.0, "lifelong": 15.0}
    assert r["ratio_to_plain"] == pytest.approx(0.75)


def test_unknown_method_is_refused_with_the_choices(throughput, capsys):
    with pytest.raises(SystemExit):
        throughput.parse_args(["--methods", "er,der"])
    assert "unknown ['der']; choose from er, pcr, hpcr" in capsys.readouterr().err
