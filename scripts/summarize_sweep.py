"""One table over a sweep's jobs: `python scripts/summarize_sweep.py outputs/multirun/<time>`.

Writes summary.csv, summary.md and summary.png into that directory; failed jobs are listed with their reason.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.sweeps import DEFAULT_METRICS, summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a -m run's directory, <output_dir>/multirun/<time>")
    parser.add_argument(
        "--metrics", nargs="+", default=DEFAULT_METRICS, metavar="SECTION.KEY",
        help="metrics.json entries to tabulate; the first is plotted (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        paths = summarize(args.sweep_dir, args.metrics)
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(paths[1].read_text(), end="")
    print("written: " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    main()
