"""Look at a run in the browser: `python scripts/view.py outputs/quadruped/<time>` (then open the URL).

The 4D result as Gaussian splats with a time slider, play/pause and frame rate, the static
model, the cameras and the keypoints (dynapose4d/viewer.py). From another machine, forward the
port first: `ssh -L 8080:localhost:8080 <server>`, then open http://localhost:8080.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.viewer import serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (outputs/<name>/<time>)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="0.0.0.0 listens on every interface; 127.0.0.1 only here")
    args = parser.parse_args()
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
