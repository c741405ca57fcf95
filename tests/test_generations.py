"""Checkpoint generations: atomic commit, checksums, fallback to the previous generation, errors naming each one."""

from __future__ import annotations

import json

import pytest
import torch

from lifelong.errors import ConfigError
from lifelong.generations import LATEST, Generations


def commit(store, n, completed, world_size=1):
    name = f"gen-{n:06d}"
    for rank in range(world_size):
        store.write_rank(name, rank, {f"rank{rank}.pt": {"w": torch.full((4,), float(n))}, f"rank{rank}.json": {}})
    store.commit(name, {"completed": completed, "world_size": world_size}, world_size)
    return name


def test_commit_switches_latest_and_keeps_only_the_previous_generation(tmp_path):
    store = Generations(tmp_path)
    for n in (1, 2, 3):
        commit(store, n, n - 2)
    assert (tmp_path / LATEST).read_text().strip() == "gen-000003"
    assert store.numbers() == [2, 3]
    name, state = store.select("here")
    assert (name, state["completed"]) == ("gen-000003", 1)
    assert torch.equal(store.load(name, "rank0.pt")["w"], torch.full((4,), 3.0))
    assert state["files"]["rank0.pt"]["bytes"] == (tmp_path / name / "rank0.pt").stat().st_size


def test_a_flipped_byte_falls_back_to_the_previous_generation_with_a_warning(tmp_path, capsys):
    store = Generations(tmp_path)
    commit(store, 1, -1)
    commit(store, 2, 0)
    path = tmp_path / "gen-000002" / "rank0.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    name, state = store.select("--resume x")
    assert (name, state["completed"]) == ("gen-000001", -1)
    err = capsys.readouterr().err
    assert "warning: --resume x: the latest checkpoint is damaged" in err
    assert f"{path} fails its sha256 checksum" in err
    assert str(tmp_path / "gen-000001") in err


def test_an_uncommitted_or_partial_newer_generation_is_ignored(tmp_path):
    store = Generations(tmp_path)
    commit(store, 1, -1)
    store.write_rank("gen-000002", 0, {"rank0.pt": {"w": torch.zeros(1)}})  # the run died before state.json
    assert store.select("x")[0] == "gen-000001"
    assert store.next_name() == "gen-000003"  # a new attempt never writes into the leftovers


def test_nothing_usable_names_every_generation_and_its_fault(tmp_path):
    store = Generations(tmp_path)
    commit(store, 1, -1)
    commit(store, 2, 0)
    (tmp_path / "gen-000002" / "rank0.pt").write_bytes(b"")
    (tmp_path / "gen-000001" / "state.json").write_text("{not json")
    with pytest.raises(ConfigError) as info:
        store.select("--resume x")
    message = str(info.value)
    assert "\n" not in message
    assert f"{tmp_path / 'gen-000002' / 'rank0.pt'} has 0 bytes" in message
    assert f"{tmp_path / 'gen-000001' / 'state.json'} is unreadable" in message


def test_no_generation_at_all_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint there"):
        Generations(tmp_path / "checkpoints").select("--resume x")


def test_a_damaged_rank_file_of_another_rank_rejects_the_generation(tmp_path):
    store = Generations(tmp_path)
    commit(store, 1, -1, world_size=2)
    commit(store, 2, 0, world_size=2)
    (tmp_path / "gen-000002" / "rank1.pt").write_bytes(b"\0" * 10)
    assert store.select("x", quiet=True)[0] == "gen-000001"  # every rank falls back together


def test_a_legacy_single_checkpoint_is_still_read(tmp_path):
    torch.save({"completed": 0}, tmp_path / "rank0.pt")
    (tmp_path / "state.json").write_text(json.dumps({"format": 1, "completed": 0, "world_size": 1}))
    store = Generations(tmp_path)
    name, state = store.select("x")
    assert (name, state["completed"]) == (".", 0)
    assert store.load(name, "rank0.pt") == {"completed": 0}
    commit(store, 1, 1)
    assert not (tmp_path / "state.json").exists()  # superseded by the first generation
