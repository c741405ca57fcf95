"""Console output: -v/-q, no third-party noise on a real run, lines flushed as they are written to a pipe."""

import subprocess
import sys
import time

import pytest

from lifelong import logs
from lifelong.cli import parse_args, verbosity


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "quickstart"], logs.NORMAL),
        (["-q", "run", "quickstart"], logs.QUIET),
        (["run", "quickstart", "-q"], logs.QUIET),
        (["run", "quickstart", "--quiet", "optim.lr=0.1"], logs.QUIET),
        (["-v", "show", "quickstart"], logs.VERBOSE),
        (["run", "quickstart", "--verbose"], logs.VERBOSE),
    ],
)
def test_verbosity_options_before_and_after_the_command(argv, expected):
    assert verbosity(parse_args(argv)) == expected


def test_a_real_run_writes_nothing_to_stderr_and_its_lines_as_they_happen(tmp_path):
    command = [sys.executable, "-m", "lifelong", "run", "quickstart", "stream.n_experiences=5", "train.epochs=1"]
    command += [f"output_dir={tmp_path}"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        arrived = {line.split(":")[0]: time.monotonic() for line in proc.stdout if line.startswith("exp ")}
        stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert stderr == ""
    assert list(arrived) == [f"exp {i}" for i in range(5)]
    # a block-buffered pipe delivers every line at once when the run ends; flushed lines come as experiences end
    assert arrived["exp 4"] - arrived["exp 0"] > 0.3


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_import_warnings_of_other_packages_are_silenced_but_real_warnings_shown():
    noisy = "warnings.warn_explicit('no QP solver found on your system', UserWarning, 'q.py', 1, module='qpsolvers')"
    real = "warnings.warn('a real problem', UserWarning)"
    done = run_python(f"import warnings; from lifelong import logs; logs.setup(); {noisy}; {real}")
    assert "QP solver" not in done.stderr
    assert "a real problem" in done.stderr


def test_mlflow_table_creation_lines_are_silenced_unless_verbose(tmp_path):
    code = (
        "import sys; from lifelong import logs; logs.setup(int(sys.argv[1])); import mlflow; "
        f"mlflow.MlflowClient('sqlite:///{tmp_path}/db' + sys.argv[1] + '.db').search_experiments()"
    )
    quiet = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True)
    verbose = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True)
    assert quiet.stderr == ""
    assert "Creating initial MLflow database tables" in verbose.stderr


def test_lifelong_warnings_go_to_stderr_with_a_prefix_and_info_to_stdout(capsys):
    logs.setup(logs.NORMAL)
    logs.LOG.info("a line")
    logs.LOG.warning("careful")
    logs.LOG.debug("hidden")
    out, err = capsys.readouterr()
    assert (out, err) == ("a line\n", "warning: careful\n")
    logs.setup(logs.QUIET)
    logs.LOG.info("hidden too")
    assert capsys.readouterr().out == ""
