"""Explain a finished run: `python scripts/explain.py run=outputs/runs/<date>/<run> method=cam n=16`."""

import sys

from reslab.explain.app import main

if __name__ == "__main__":
    sys.exit(main())
