"""The infinite learning-rate schedule over a run: the main branch never restarts, each experience anneals a fork."""

import pytest
import torch
from torch import nn

from lifelong import config
from lifelong.annealing import InfiniteLR
from lifelong.build import lr_schedule
from lifelong.errors import ConfigError
from lifelong.run import run
from lifelong.schedules import InfiniteSchedule


def test_learning_rates_and_the_fork_by_hand():
    schedule = InfiniteSchedule(lr_max=1.0, warmup_steps=2, cooldown_steps=6, anneal_fraction=0.2)
    driver = InfiniteLR(schedule)
    net = nn.Linear(2, 1)
    lrs, forked_at = [], None
    for _experience in range(2):
        driver.begin_experience(10)
        for step in range(10):
            if driver.fork is None:
                lrs.append(driver.next_lr(net))
                if driver.fork is not None:
                    forked_at = (step, {k: v.clone() for k, v in net.state_dict().items()})
            else:
                lrs.append(driver.next_lr(net))
            with torch.no_grad():
                net.weight += 1.0  # a "step"
        assert driver.restore(net)
        step, state = forked_at
        assert step == 8  # the last 20% of the 10 steps are the annealed branch
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # back to the fork
        assert not driver.restore(net)
    main_first = [schedule.lr(n) for n in range(8)]
    main_second = [schedule.lr(n) for n in range(8, 16)]  # the main step counter does not restart
    anneal = [schedule.anneal_lr(s, 2) for s in (1, 2)]
    assert lrs == pytest.approx(main_first + anneal + main_second + anneal)
    assert int(driver.main_step) == 16
    assert anneal[-1] == pytest.approx(schedule.lr_max * schedule.min_ratio)


def test_the_schedule_is_sized_on_the_first_experience():
    cfg = config.load(overrides=["optim.schedule.name=infinite", "train.batch_size=10", "train.epochs=2"])
    driver = lr_schedule(cfg, 95)  # 10 batches (the last one partial) x 2 epochs = 20 steps
    assert (driver.schedule.warmup_steps, driver.schedule.cooldown_steps) == (1, 10)
    with pytest.raises(ConfigError, match="optim.schedule.name"):
        config.load(overrides=["optim.schedule.name=cosine"])


def test_a_run_with_the_infinite_schedule(tmp_path):
    cfg = config.load(
        "experiments/quickstart.yaml",
        [f"output_dir={tmp_path}", "tracking.enabled=false", "stream.n_experiences=2", "optim.schedule.name=infinite"],
    )
    result = run(cfg, quiet=True)
    assert result.matrix.is_complete
    assert result.metrics["avg_acc"] > 0.6  # two tasks of two digit classes: chance 0.5 on each
