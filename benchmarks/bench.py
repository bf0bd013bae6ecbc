"""tinyconv side by side with PyTorch: the same as `tinyconv bench`.

    python benchmarks/bench.py [--batch 64 256] [--rounds 7] [--epoch] [--json FILE]
"""

import sys

from tinyconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
