"""An Avalanche benchmark trained by lifelong's Lightning loop, from Python.

The YAML way is `lifelong run experiments/avalanche_split_fmnist.yaml`.

    python examples/avalanche_benchmark_in_lifelong.py --dataset-root data/avalanche
"""

from __future__ import annotations

import argparse

from lifelong import config
from lifelong.run import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-root", default="data/avalanche", help="torchvision layout: <root>/FashionMNIST/raw")
    parser.add_argument("--strategy", default="er")
    args = parser.parse_args()
    cfg = config.load(
        "experiments/avalanche_split_fmnist.yaml",
        [f"stream.avalanche.kwargs.dataset_root={args.dataset_root}", f"strategy.name={args.strategy}"],
    )
    result = run(cfg)
    print(f"{cfg.run_name}: avg_acc {result.metrics['avg_acc']:.3f}, run dir {result.run_dir}")


if __name__ == "__main__":
    main()
