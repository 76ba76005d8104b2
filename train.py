"""Train a model composed from configs/: `python train.py model=resnet depth=20`."""

import sys
from pathlib import Path

import hydra

from reslab.cli import preflight, resume_argv, run_job
from reslab.training.distributed import worker_overrides

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg) -> float | None:
    return run_job(cfg)


if __name__ == "__main__":
    preflight(sys.argv[1:], CONFIG_DIR)
    sys.argv[1:] = resume_argv(sys.argv[1:], CONFIG_DIR)  # resume=<run>: its overrides, its folder
    sys.argv += worker_overrides()  # torchrun: ranks other than 0 write no run folder
    main()
