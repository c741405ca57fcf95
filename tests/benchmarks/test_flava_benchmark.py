"""benchmarks/flava.py: the shared init checkpoint, the init pool's layout and knobs, the paired difference."""

from __future__ import annotations

import json

import pytest

from tests.benchmark_scripts import load_benchmark

LAYOUT = ["--frames", "4", "--patch-size", "4", "--audio-frames", "128", "--frame-shift-ms", "7.5"]


@pytest.fixture(scope="module")
def flava():
    return load_benchmark("flava")


def test_shared_init_checkpoint_starts_every_method_and_seed(flava):
    args = flava.parse_args([*LAYOUT, "--shared-init"])
    assert flava.config("flava", 0, args).init.checkpoint is None  # the shared init itself is trained, not loaded
    args.init_checkpoint = "runs/init/init-abc.pt"  # what main sets after training it once
    for method in flava.METHODS:
        for seed in (0, 4):
            cfg = flava.config(method, seed, args)
            assert cfg.seed == seed
            assert cfg.init.checkpoint == "runs/init/init-abc.pt"


def test_a_ready_init_checkpoint_starts_every_run(flava):
    args = flava.parse_args([*LAYOUT, "--contrastive-weight", "1.0", "--init-checkpoint", "shared.pt"])
    assert {flava.config(m, s, args).init.checkpoint for m in flava.METHODS for s in (0, 2)} == {"shared.pt"}


def test_init_pool_has_the_stream_layout_and_the_init_knobs(flava):
    cfg = flava.config("derpp", 0, flava.parse_args([*LAYOUT, "--init-lr", "3e-4", "--init-batch-size", "32"]))
    params = cfg.init.params
    assert (params["frames"], params["target_frames"], params["frame_shift_ms"]) == (4, 128, 7.5)
    assert (params["image_size"], params["mel_bins"]) == (
        cfg.stream.params["image_size"],
        cfg.stream.params["mel_bins"],
    )
    assert (cfg.init.lr, cfg.init.batch_size) == (3e-4, 32)
    default = flava.config("derpp", 0, flava.parse_args([]))
    assert (default.init.lr, default.init.batch_size) == (None, None)  # the run's lr and batch, as before


def test_init_cache_key_follows_every_init_setting_and_the_layout(flava):
    from lifelong.init_stage import init_key

    def key(argv, method="flava", seed=0):
        cfg = flava.config(method, seed, flava.parse_args(argv))
        return init_key(cfg.init, cfg.model, seed)

    base = key(LAYOUT)
    assert key(LAYOUT, method="finetune") == base  # every method of a seed shares the file
    assert key([]) != base  # the 32 + 32-token layout
    for change in (["--init-lr", "3e-4"], ["--init-batch-size", "32"], ["--init-epochs", "5"], ["--init-copies", "8"]):
        assert key([*LAYOUT, *change]) != base, change
    assert key([*LAYOUT, "--init-voices", "en,es"]) != base
    assert key(LAYOUT, seed=1) != base


def _run(a2v: float, v2a: float) -> dict:
    summary = {
        f"{d}/R@1/{what}": value for d, value in (("a2v", a2v), ("v2a", v2a)) for what in ("average", "forgetting")
    }
    initial = {"a2v_R1": [0.3, 0.1], "v2a_R1": [0.2, 0.2]}
    return {"summary": summary, "initial": initial, "samples_per_s": 10.0, "peak_rss_mb": 100.0}


def test_table_has_the_init_row_and_the_paired_flava_minus_derpp(flava, tmp_path):
    runs = {"derpp": [_run(0.2, 0.3), _run(0.3, 0.3)], "flava": [_run(0.25, 0.2), _run(0.25, 0.4)]}
    out = tmp_path / "t.json"
    flava.write_table(runs, {}, out)
    result = json.loads(out.read_text())
    assert result["table"]["flava"]["init a2v/R@1"] == [pytest.approx(0.2)] * 2
    diff = result["flava_minus_derpp"]["a2v/R@1/average"]
    assert diff["per_seed"] == [pytest.approx(0.05), pytest.approx(-0.05)]
    assert diff["mean"] == pytest.approx(0.0)
    assert diff["se"] == pytest.approx(0.05)  # sd 0.0707 / sqrt(2)
    assert result["flava_minus_derpp"]["v2a/R@1/average"]["mean"] == pytest.approx(0.0)


def test_the_shipped_256_token_yaml_is_the_readme_tables_run(flava):
    """``experiments/pretrain/flava_av_digits_256.yaml`` is the benchmark's run with the commands of flava.md."""
    from pathlib import Path

    from lifelong import config
    from lifelong.config import to_dict
    from lifelong.init_stage import init_key

    commands = [
        *LAYOUT,
        *("--audio-chunk", "2", "--visible-ratio", "0.2", "--contrastive-weight", "0.1", "--shared-init"),
        *("--init-voices", "en,es,fr,ru", "--init-copies", "48", "--init-epochs", "30", "--init-lr", "3e-4"),
        *("--avm-epochs", "3", "--lr", "1e-4", "--epochs", "5", "--copies", "24"),
    ]
    benchmark = flava.config("flava", 0, flava.parse_args(commands))
    shipped = config.load(Path(__file__).parents[2] / "experiments" / "pretrain" / "flava_av_digits_256.yaml")
    assert init_key(shipped.init, shipped.model, 0) == init_key(benchmark.init, benchmark.model, 0)
    differs = {"name", "output_dir", "tracking", "checkpoint"}  # the benchmark's bookkeeping, not its maths
    ours, theirs = to_dict(shipped), to_dict(benchmark)
    for cfg in (ours, theirs):
        cfg["init"].pop("cache_dir")  # runs/init either way: the benchmark names <output_dir>/init's default
    assert {k: v for k, v in ours.items() if k not in differs} == {k: v for k, v in theirs.items() if k not in differs}
