"""Write the built-in synthetic subject as a ground-truth sample: `python scripts/make_synthetic_sample.py kind=biped`.

    python scripts/make_synthetic_sample.py kind=quadruped seed=3 out=samples/quadruped-3
    python scripts/make_synthetic_sample.py kind=biped frames=16 resolution=256 every_frame=true

Settings (key=value, as scripts/train.py takes them): kind (quadruped | biped | bird | blob), seed, frames,
gaussians, resolution, every_frame (training views at every frame, for dynamic.prior=oracle),
out (default samples/<kind>-<seed>). Train on it with
`python scripts/train.py experiment=ground_truth sample=<out>`; the folder's layout is
README's "Bring your own ground truth".
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.data.synthetic import write_synthetic_sample  # noqa: E402

DEFAULTS = {"kind": "quadruped", "seed": "0", "frames": "16", "gaussians": "4000", "resolution": "128",
            "every_frame": "false", "out": None}  # fmt: skip


def parse(arguments: list[str]) -> dict:
    """key=value arguments over DEFAULTS; exits with a usage line on anything else."""
    settings = dict(DEFAULTS)
    for argument in arguments:
        key, sign, value = argument.partition("=")
        if not sign or key not in DEFAULTS:
            sys.exit(f"error: {argument!r}: expected key=value with key one of {', '.join(DEFAULTS)}")
        settings[key] = value
    if settings["every_frame"] not in ("true", "false"):
        sys.exit("error: every_frame must be true or false")
    return settings


def main() -> None:
    settings = parse(sys.argv[1:])
    try:
        seed, frames, gaussians, resolution = (int(settings[key]) for key in ("seed", "frames", "gaussians",
                                                                             "resolution"))  # fmt: skip
    except ValueError:
        sys.exit("error: seed, frames, gaussians and resolution must be integers")
    out = Path(settings["out"] or f"samples/{settings['kind']}-{seed}")
    try:
        write_synthetic_sample(
            out, settings["kind"], seed, num_frames=frames, num_gaussians=gaussians, resolution=resolution,
            training_views_every_frame=settings["every_frame"] == "true",
        )  # fmt: skip
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {out}: python scripts/train.py experiment=ground_truth sample={out}")


if __name__ == "__main__":
    main()
