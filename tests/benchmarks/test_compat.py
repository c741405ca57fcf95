"""benchmarks/compat.py: its protocol variants, the scores under both tie rules and the tables."""

from __future__ import annotations

import pytest

from lifelong.analysis import ANALYSES
from tests.benchmark_scripts import load_benchmark

NAN = float("nan")


@pytest.fixture(scope="module")
def compat():
    return load_benchmark("compat")


def test_protocol_variants_fix_their_parameters_and_artifact_names(compat):
    # built directly: registering them here would leave them in the process-wide registry (the catalog test)
    name = "compat_digits_verification"
    verification = compat.variant(name, compat.PROTOCOLS[name])()
    assert verification.protocol == "verification"
    assert verification.dataset == "digits"
    assert verification.match_shape
    assert verification.artifact_stem == name
    held_out = compat.variant("x", compat.PROTOCOLS["compat_heldout_verification"])(n_pairs=5)
    assert held_out.unseen
    assert held_out.dataset == "fashion_mnist"
    assert held_out.n_pairs == 5
    assert name not in ANALYSES.names()


def test_scores_report_both_tie_rules(compat):
    tie = [[0.5, NAN, NAN], [0.5, 0.6, NAN], [0.7, 0.6, 0.8]]  # (1,0) and (2,1) ties, (2,0) passes
    out = compat.scores(tie)
    assert out["ac"] == pytest.approx(1 / 3)
    assert out["ac_ties_pass"] == 1.0
    assert out["self_test"] == 0.8


def test_summary_and_tables(compat):
    matrix = [[0.5, NAN], [0.6, 0.7]]
    run = {"avg_acc": 0.9, **{name: {**compat.scores(matrix), "matrix": matrix} for name in compat.PROTOCOLS}}
    summary = compat.summarise({"er": [run, run]})
    assert summary["er"]["compatibility"]["ac"] == [1.0, 0.0]
    assert summary["er"]["compatibility"]["matrix"][1] == [0.6, 0.7]
    text = compat.report(summary, {}, [0, 1], 1.0)
    assert "| er | 1.000 ± 0.000 | 1.000 ± 0.000 |" in text
    assert "M[1] 0.600 0.700" in text


def test_later_replacements_get_stronger_models_and_one_gets_the_strongest(compat, monkeypatch, tmp_path):
    calls = []

    def fake_pretrain(head, seed, tmp, simplex, per_class, epochs):
        calls.append((seed, per_class, epochs))
        return tmp / f"{per_class}.pt"

    monkeypatch.setattr(compat, "pretrain", fake_pretrain)
    schedule = compat.replacement_models("dsimplex", 3, tmp_path, (0, 2, 4), None)
    assert [p.name for p in schedule.values()] == ["300.pt", "1000.pt", "3000.pt"]
    assert list(schedule) == [0, 2, 4]
    assert [c[0] for c in calls] == [1003, 1103, 1203]  # a different draw per replacement
    calls.clear()
    assert compat.replacement_models("linear", 3, tmp_path, (2,), None) == {2: tmp_path / "3000.pt"}
    assert calls == [(1003, 3000, 10)]
