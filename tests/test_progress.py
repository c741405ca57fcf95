"""The live progress bar: drawn on a pseudo-terminal, absent when the output is piped."""

import os
import pty
import subprocess
import sys

from lifelong.progress import ERASE, LiveBar, clock

TINY = ["stream.n_experiences=2", "train.epochs=1", "tracking.enabled=false"]


def test_render_names_experience_step_loss_rate_and_eta():
    bar = LiveBar(width=10)
    bar.on_fit_start(experience=1, n_experiences=5, steps=100, batch_size=16)
    bar.step, bar.loss = 25, 0.5
    text = bar.render(bar.started + 5.0)  # 25 steps in 5 s: 5 steps/s, 80 samples/s, 75 steps left: 15 s
    assert text == "exp 2/5 [##........] step 25/100 | loss 0.500 | 80 samples/s | ETA 0:15"
    assert clock(3725) == "1:02:05"


def run_on_a_terminal(command: list[str], cwd) -> tuple[int, str]:
    """Run ``command`` with stdout and stderr on a pseudo-terminal; its exit status and everything it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed when the process ends (EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_bar_is_drawn_on_a_terminal_and_erased_before_each_line(tmp_path):
    command = [sys.executable, "-m", "lifelong", "run", "quickstart", *TINY, f"output_dir={tmp_path}"]
    status, out = run_on_a_terminal(command, tmp_path)
    assert status == 0, out
    assert "exp 1/2 [" in out
    assert "exp 2/2 [####################] step" in out  # the last step of the last experience is drawn
    assert " samples/s | ETA " in out
    assert ERASE + "exp 1: classes" in out  # the bar is erased before the experience's line


def test_no_bar_when_piped(tmp_path):
    command = [sys.executable, "-m", "lifelong", "run", "quickstart", *TINY, f"output_dir={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exp 1: classes" in done.stdout
    assert "\r" not in done.stdout
    assert "ETA" not in done.stdout


def test_the_init_stage_says_what_it_trains_and_draws_its_own_bar(tmp_path):
    av = [
        "stream.dataset=av_synthetic",
        "stream.params={train_per_task: 16, test_per_task: 4, tasks: [[0, 1]]}",
        "model.backbone=cavmae_tiny",
        "strategy.name=av_finetune",
        "train.batch_size=8",
        "train.drop_last=true",
        "train.epochs=1",
        "init.dataset=av_synthetic",
        "init.params={train_per_task: 16, tasks: [[4, 5]]}",
        "init.strategy=av_contrast",
        "init.epochs=2",
        "init.avm_epochs=1",
        "tracking.enabled=false",
        f"output_dir={tmp_path}",
    ]
    command = [sys.executable, "-m", "lifelong", "run", "quickstart", *av]
    status, out = run_on_a_terminal(command, tmp_path)
    assert status == 0, out
    (cached,) = (tmp_path / "init").glob("init-*.pt")
    said = "init: training av_contrast on the av_synthetic pool for 2 epoch(s) and an AVM warm-up for 1"
    assert said in out
    assert f"(once: cached as {cached})" in out
    assert "init av_contrast [####################] step 4/4" in out  # 16 pairs in batches of 8, 2 epochs
    assert "init AVM warm-up [####################] step 2/2" in out
    assert out.index(said) < out.index("init av_contrast [") < out.index("init: trained in ") < out.index("exp 1/1 [")
    status, again = run_on_a_terminal(command, tmp_path)
    assert status == 0, again
    assert f"init: loading the cached init stage {cached}" in again
    assert "init av_contrast [" not in again
