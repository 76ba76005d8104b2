"""Re-test a saved run: `python scripts/evaluate.py run=outputs/runs/<date>/<run> [split=val]`."""

import sys
from pathlib import Path

from reslab.evaluate import main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

if __name__ == "__main__":
    sys.exit(main(config_dir=CONFIG_DIR))
