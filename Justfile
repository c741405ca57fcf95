# lifelong: common tasks. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# the quickstart: ER on Split Digits in about a minute on 2 CPU cores (`lifelong run quickstart strategy.name=finetune` to compare)
demo:
    lifelong run experiments/quickstart.yaml

# the Debian packages the full test suite reads (real Fashion-MNIST, the asterisk spoken digits, headless Chromium); run as root
system-deps:
    apt-get update
    apt-get install -y dataset-fashion-mnist chromium espeak-ng asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav

# the fast test suite (what CI runs)
test:
    python -m pytest -q -n 2 --durations=15

# everything, slow tests included
test-all:
    python -m pytest -q -n 2 -m "" --durations=15

# ruff and mypy
lint:
    ruff check lifelong tests benchmarks examples
    ruff format --check lifelong tests benchmarks examples
    mypy

# the MLflow UI on the project's store (runs/mlflow.db), opened on an experiment's runs table, e.g. `just ui quickstart`
ui experiment="" port="5000":
    lifelong ui {{experiment}} --port {{port}}

# online ER/PCR/HPCR throughput vs a plain PyTorch loop (and Avalanche for ER), MLP and reduced ResNet-18 (~15 min on 2 cores)
bench:
    OMP_NUM_THREADS=1 python benchmarks/throughput.py --repeats 5 --json benchmarks/results/throughput.json

# stability/plasticity: layer-wise CKA and linear probes, finetune vs ER (+ hpcr), 3 seeds (~2 min)
stability:
    python benchmarks/stability.py --seeds 0,1,2

# an HTML page of a run or of an experiment's runs, e.g. `just report runs/quickstart`
report target:
    lifelong report {{target}}
