"""Compare the jobs of a sweep: `python scripts/compare.py outputs/multirun/<date>/<time>`."""

import sys

from reslab.report.compare import main

if __name__ == "__main__":
    sys.exit(main())
