"""The submitit executors of ``lifelong sweep``: what a SLURM job array is asked for, and the local settings."""

from __future__ import annotations

import os

import pytest

from lifelong.errors import ConfigError
from lifelong.launch import LaunchOptions, cpu_threads, make_executor


def test_slurm_options_become_the_job_arrays_sbatch_lines(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")  # submitit only checks that SLURM is installed
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    options = LaunchOptions("slurm", 16, folder=tmp_path / "jobs", timeout_min=240, partition="gpu", gpus=1)
    text = make_executor(options)._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=240"):
        assert line in text
    assert "#SBATCH --signal=USR2@" in text  # the preemption/timeout signal submitit requeues on
    assert make_executor(options).parameters["array_parallelism"] == 16


def test_slurm_without_slurm_and_bad_settings_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="needs SLURM"):
        make_executor(LaunchOptions("slurm", 2, folder=tmp_path))
    with pytest.raises(ConfigError, match="--jobs 0"):
        make_executor(LaunchOptions("local", 0, folder=tmp_path))
    with pytest.raises(ConfigError, match="--launcher 'pbs'"):
        make_executor(LaunchOptions("pbs", 1, folder=tmp_path))


def test_local_jobs_split_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert cpu_threads(1) == cores
    assert cpu_threads(cores * 4) == 1


def test_a_sweep_of_a_shipped_experiment_names_its_file_for_every_job(tmp_path, monkeypatch):
    from lifelong.shipped import experiments_dir
    from lifelong.sweep import plan

    monkeypatch.chdir(tmp_path)  # an empty folder: `lifelong sweep quickstart` as an installed user types it
    _, jobs = plan("quickstart", [], {"strategy.name": ["er", "finetune"]}, [0])
    assert [job.config for job in jobs] == [str((experiments_dir() / "quickstart.yaml").resolve())] * 2
    assert all(job.run_dir.startswith(str(tmp_path)) for job in jobs)
