"""Side-by-side benchmark runner: `python bench/run.py --help` (same as `python -m pynn bench`)."""
import sys

from pynn.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
