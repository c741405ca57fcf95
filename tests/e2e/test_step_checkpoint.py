"""Checkpoints inside an experience (``checkpoint.every_n_steps``): SIGKILLed mid-experience, resumed, same result.

The run of ``test_hard_kill`` (5 experiences of 2 epochs, dropout, deterministic) with a checkpoint every 7
steps. A real process is killed right after it committed a checkpoint inside experience 0, and again at a
random moment; each resume starts inside the experience (not at its start) and the last one ends with the
uninterrupted run's accuracy matrix and metric histories, in the same MLflow run.
"""

from __future__ import annotations

import random
import signal

import pytest

from lifelong.checkpoint import read_state
from tests.e2e import test_hard_kill as hard_kill

EVERY = 7


@pytest.fixture
def stepping(monkeypatch):
    """The hard-kill run, with a checkpoint every ``EVERY`` steps."""
    monkeypatch.setattr(hard_kill, "OVERRIDES", [*hard_kill.OVERRIDES, f"checkpoint.every_n_steps={EVERY}"])


def test_killed_inside_an_experience_resumes_there_to_the_uninterrupted_result(stepping, tmp_path):
    full = hard_kill.reference(tmp_path / "full")
    root = tmp_path / "cut"
    # 1. killed right after the third commit: the evaluation before training, then steps 7 and 14 of experience 0
    code, _, err = hard_kill.finish(hard_kill.launch(root, crash_at="checkpoint.pointer@3"))
    assert code == -signal.SIGKILL, err
    run_dir = hard_kill.run_dir_of(root)
    state = read_state(run_dir, quiet=True)
    assert (state["completed"], state["experience"], state["steps"]) == (-1, 0, 2 * EVERY)
    # 2. resumed at step 14 of experience 0 (not at its start), killed after its next commit
    code, out, err = hard_kill.finish(hard_kill.launch(root, crash_at="checkpoint.pointer@1", resume=run_dir))
    assert code == -signal.SIGKILL, err
    assert f"resumed after experience -1, inside experience 0 after {2 * EVERY} of its steps" in out
    # 3. resumed again, then killed at a random moment
    process = hard_kill.launch(root, resume=run_dir)
    hard_kill.kill_during_training(process, random.Random(22), longest=3.0)
    code, out, err = hard_kill.finish(process)
    assert code in (-signal.SIGKILL, 0), err
    # 4. the last resume finishes
    code, out, err = hard_kill.finish(hard_kill.launch(root, resume=run_dir))
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    hard_kill.assert_same_as_uninterrupted(root, full)


def test_the_uninterrupted_run_is_the_same_with_and_without_step_checkpoints(tmp_path, monkeypatch):
    plain = hard_kill.reference(tmp_path / "plain")
    monkeypatch.setattr(hard_kill, "OVERRIDES", [*hard_kill.OVERRIDES, f"checkpoint.every_n_steps={EVERY}"])
    stepped = hard_kill.reference(tmp_path / "stepped")
    assert (stepped.run_dir / "accuracy_matrix.csv").read_text() == (plain.run_dir / "accuracy_matrix.csv").read_text()
