"""Fetch every model the default pipeline loads into one directory, for offline runs.

    python scripts/download_weights.py [--dir weights/] [--only zero123,svd,poseanything,rembg] [--eval] [--dry-run]

Thin on purpose: the models, their layout and the downloads are in dynapose4d/weights.py.
It lists each model (size, licence, source) before downloading anything, resumes what an
interrupted run left, and ends with the one setting that makes later runs offline.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.weights import CATALOGUE, DEFAULT_DIR, describe, fetch, offline_settings, select  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=DEFAULT_DIR, help=f"where the models go (default: {DEFAULT_DIR}/)")
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(CATALOGUE)}")
    parser.add_argument("--eval", action="store_true", help="also the evaluation models (CLIP, I3D, LPIPS)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched; no network")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    directory = Path(args.dir).expanduser().resolve()  # absolute: later runs may start elsewhere
    chosen = select(args.only.split(",") if args.only else None, args.eval)
    print("\n".join(describe(weights, directory) for weights in chosen))
    if args.dry_run:
        print("\ndry run: nothing was downloaded")
    for weights in [] if args.dry_run else chosen:
        print(f"\n{weights.model.name}:")
        fetch(weights, directory)
    done = "would make" if args.dry_run else "make"
    print(f"\nThese settings {done} every later run offline:\n  " + "\n  ".join(offline_settings(chosen, directory)))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
