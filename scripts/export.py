"""Export a finished run as an animated mesh: `python scripts/export.py outputs/quadruped/<time> --format glb`.

glb: one <run>/dynamic/mesh/animated.glb (morph targets and one animation, for Blender, game
engines and three.js); obj | ply: one mesh per driving frame in <run>/dynamic/mesh/<format>/.
The mesh settings (configs/mesh/default.yaml) take key=value overrides after the run directory:

    python scripts/export.py outputs/quadruped/<time> --format obj mesh.resolution=96 mesh.face_budget=20000
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from omegaconf import OmegaConf  # noqa: E402

from dynapose4d.cli import CONFIG_DIR  # noqa: E402
from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.export import FORMATS  # noqa: E402
from dynapose4d.export.animated import export_run  # noqa: E402


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dir", type=Path, help="a run directory (outputs/<name>/<time>) whose dynamic stage is done"
    )
    parser.add_argument("--format", choices=FORMATS, help="default: mesh.format (glb)")
    parser.add_argument("overrides", nargs="*", metavar="mesh.KEY=VALUE", help="mesh settings")
    return parser


def main() -> None:
    args = arguments().parse_intermixed_args()  # key=value overrides before or after --format
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    try:
        defaults = OmegaConf.load(CONFIG_DIR / "mesh" / "default.yaml")
        paths = export_run(args.run_dir, defaults, args.format, args.overrides)
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(paths[0] if len(paths) == 1 else f"{len(paths)} files in {paths[0].parent}")


if __name__ == "__main__":
    main()
