"""Look at a run in the browser: `python scripts/view.py outputs/quadruped/<time>` (then open the URL).

The 4D result as Gaussian splats with a time slider, play/pause and frame rate, the static
model, the cameras and the keypoints (dynapose4d/viewer.py), opening at the reference view.
It listens on this machine only (127.0.0.1); from another machine, forward the port first:
`ssh -L 8080:localhost:8080 <server>`, then open http://localhost:8080. `--host 0.0.0.0`
shares it with anyone who can reach this machine.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.viewer import DEFAULT_HOST, serve  # noqa: E402


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (outputs/<name>/<time>)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="127.0.0.1: this machine only (default); 0.0.0.0: anyone who can reach it")  # fmt: skip
    return parser


def main() -> None:
    args = arguments().parse_args()
    logging.basicConfig(format="%(levelname)s: %(message)s")  # the viewer's warning of an open host
    try:
        server, _ = serve(args.run_dir, args.host, args.port)
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"viewing {args.run_dir} at http://localhost:{server.get_port()} (Ctrl-C to stop)", flush=True)
    try:
        server.sleep_forever()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
