"""Config digests and the comparison table: runs are pooled only when their configs agree up to the seed."""

from __future__ import annotations

import pytest

from lifelong import config
from lifelong.compare import RunRow, compare_table, grid_table, group_runs, parse_grid
from lifelong.digest import config_digest, differing_keys, short_digest
from lifelong.provenance import resolved_params, tracked_run_name
from lifelong.sweep import cells


def params(**changes: str) -> dict[str, str]:
    base = {"seed": "0", "strategy.name": "er", "strategy.params.memory_size": "200", "train.epochs": "5"}
    base.update({k.replace("__", "."): v for k, v in changes.items()})
    return base


def test_digest_ignores_seed_output_and_tracking_only():
    a = params()
    assert config_digest(a) == config_digest({**a, "seed": "3", "output_dir": "/elsewhere", "tracking.uri": "x"})
    assert config_digest(a) != config_digest({**a, "strategy.params.memory_size": "10"})
    assert config_digest(a) != config_digest({**a, "trainer.precision": "bf16-mixed"})  # a new key differs too
    assert len(short_digest(a)) == 8


def test_two_memory_sizes_are_two_rows_and_three_seeds_one():
    rows = [RunRow(f"r{s}", params(seed=str(s)), {"avg_acc": v}) for s, v in ((0, 0.5), (1, 0.7), (2, 0.6))]
    rows.append(RunRow("small", params(strategy__params__memory_size="10", train__epochs="1"), {"avg_acc": 0.2}))
    groups = group_runs(rows)
    assert [len(g.runs) for g in groups] == [1, 3]  # sorted by label: memory_size=10 first
    labels = {len(g.runs): g.label for g in groups}
    assert labels[3] == "er (memory_size=200, train.epochs=5)"
    assert labels[1] == "er (memory_size=10, train.epochs=1)"
    table = compare_table(rows)
    assert f"| er (memory_size=200, train.epochs=5) | {short_digest(params())} | 3 | 0,1,2 | 0.6000 ± 0.1000 |" in table
    assert "| er (memory_size=10, train.epochs=1) |" in table


def test_a_repeated_seed_is_shown_not_hidden():
    rows = [RunRow("a", params(), {"avg_acc": 0.5}), RunRow("b", params(), {"avg_acc": 0.7})]
    assert "| 2 | 0×2 |" in compare_table(rows)


def test_by_key_pools_settings_and_says_how_they_differ():
    rows = [RunRow("a", params(), {"avg_acc": 0.5}), RunRow("b", params(strategy__params__memory_size="10"), {})]
    table = compare_table(rows, by="strategy.name")
    assert "| er | 2 configs | 2 | 0×2 |" in table
    assert "pools runs that differ in: memory_size" in table
    with pytest.raises(ValueError, match="--by 'nope'"):
        compare_table(rows, by="nope")


def test_differing_keys_count_a_missing_key():
    assert differing_keys([{"a": "1"}, {"a": "1", "b": "2"}]) == ["b"]


def test_resolved_params_hold_defaults_and_spelled_out_defaults_are_the_same_setting():
    implicit = config.load("experiments/quickstart.yaml")
    explicit = config.load("experiments/quickstart.yaml", ["strategy.params.replay_batch_size=null"])
    flat = resolved_params(implicit)
    assert flat["strategy.params.replay_batch_size"] == "None"  # ER's default, not in the YAML
    assert flat["model.backbone_kwargs.dropout"] == "0.0"
    assert "strategy.params.seed" not in flat  # the run's seed sets it
    assert config_digest(flat) == config_digest(resolved_params(explicit))
    other = config.load("experiments/quickstart.yaml", ["strategy.params.memory_size=10"])
    assert tracked_run_name(implicit) != tracked_run_name(other)
    assert tracked_run_name(implicit) == f"er-digits-{short_digest(flat)}-s0"


def test_a_grid_is_parsed_and_crossed_with_the_seeds():
    grid = parse_grid(["strategy.name=er,hpcr", "strategy.params.memory_size=200,500"])
    assert grid == {"strategy.name": ["er", "hpcr"], "strategy.params.memory_size": ["200", "500"]}
    made = cells(grid, [0, 1])
    assert len(made) == 8
    assert made[:2] == [(["strategy.name=er", "strategy.params.memory_size=200"], 0)] + [
        (["strategy.name=er", "strategy.params.memory_size=200"], 1)
    ]
    assert cells({}, [3]) == [([], 3)]  # no grid: the seeds alone


@pytest.mark.parametrize("bad", [["strategy.name"], ["strategy.name=er,"], ["=1,2"], ["a=1", "a=2"]])
def test_a_bad_grid_item_names_the_form(bad):
    with pytest.raises(ValueError, match="--grid"):
        parse_grid(bad)


def test_grid_table_puts_the_last_key_in_columns_and_the_mean_over_seeds_in_cells():
    values = {("er", "200"): [0.5, 0.7], ("er", "500"): [0.6], ("hpcr", "200"): [0.8, 0.9]}
    rows = [
        RunRow(f"r{i}", params(strategy__name=s, strategy__params__memory_size=m, seed=str(i)), {"avg_acc": v})
        for (s, m), vs in values.items()
        for i, v in enumerate(vs)
    ]
    grid = {"strategy.name": ["er", "hpcr"], "strategy.params.memory_size": ["200", "500"]}
    lines = grid_table(rows, grid).splitlines()
    assert lines[0] == "| strategy.name \\ strategy.params.memory_size | 200 | 500 |"
    assert lines[2] == "| er | 0.6000 ± 0.1414 (n=2) | 0.6000 ± 0.0000 (n=1) |"
    assert lines[3] == "| hpcr | 0.8500 ± 0.0707 (n=2) | - |"  # a cell no finished run has
