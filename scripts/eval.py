"""Score renders or trained runs on Consistent4D, Animate124 or a ground-truth sample: `python scripts/eval.py ...`.

Thin on purpose: compose the Hydra config (configs/eval.yaml), call
`dynapose4d.eval.runner.evaluate`, and turn user-fixable problems into one-line errors.
"""

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.eval.runner import evaluate  # noqa: E402

log = logging.getLogger("dynapose4d")


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        output_dir = evaluate(cfg)
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print((output_dir / "table.md").read_text())
    log.info("wrote %s", output_dir)


if __name__ == "__main__":
    main()
