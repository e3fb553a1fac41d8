"""One pre-flight pass over every setting: all problems in one message, before anything runs.

Each setting is checked against the schema (config_schema.py, in the rule language of
rules.py); here are the checks across components: settings valid alone but not together, and
keys that moved, which name their new place.
"""

from omegaconf import DictConfig, OmegaConf

from .config_schema import train_schema
from .errors import DynaPoseError
from .registry import import_plugins
from .rules import check_settings
from .stages.terms.motion import PLANE_PRIORS

# Settings that need ground truth (the oracle sources and priors.build_prior)
NEEDS_GROUND_TRUTH = ("static.prior", "video.source", "keypoints.source", "dynamic.prior")
# Where the settings of earlier versions went: the dynamic stage's losses and field are its own now.
MOVED = {
    "loss": "dynamic.loss (one weight per term: dynamic.loss.kml=..., not loss.kml.weight=...)",
    "deformation": "dynamic.deformation (pick one with dynamic/deformation=sparse_control)",
    "static.loss.ref_warmup": "static.ref_warmup",
}


class SettingsError(DynaPoseError):
    """Settings that cannot work, found before anything was run or written."""


def validate_settings(cfg: DictConfig) -> None:
    """Check every setting of the train config at once; raise one SettingsError that lists all problems."""
    import_plugins(OmegaConf.select(cfg, "plugins", default=None))  # first: their components join the schema
    moved = [key for key in MOVED if OmegaConf.select(cfg, key, default=None) is not None]
    problems = [f"  {key}: moved to {MOVED[key]}" for key in moved]
    problems += [
        line for line in check_settings(cfg, train_schema()) if not any(line.startswith(f"  {key}:") for key in moved)
    ]
    problems += combination_problems(cfg)
    if len(problems) == 1:  # one line, as every other user error
        raise SettingsError(f"invalid setting {problems[0].strip()}; nothing was run and no run directory was made")
    if problems:
        header = f"{len(problems)} invalid settings; nothing was run and no run directory was made:"
        raise SettingsError("\n".join([header, *problems]))


def combination_problems(cfg: DictConfig) -> list[str]:
    """Settings valid alone but not together: `oracle` needs ground truth, there is one input, and
    the plane priors need planes."""

    def value(key):
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)

    problems = []
    plane_priors = [f"dynamic.loss.{name}" for name in PLANE_PRIORS if value(f"dynamic.loss.{name}")]
    if plane_priors and value("dynamic.deformation.name") != "hexplane":
        problems.append(
            f"  {', '.join(plane_priors)} > 0: regularise the hexplane's planes, use dynamic/deformation=hexplane"
        )
    synthetic, sample = value("synthetic") is not None, value("sample") is not None
    if synthetic and sample:
        problems.append("  sample and experiment=synthetic both give the ground truth: keep one")
    elif sample and value("image") is not None:
        problems.append("  image and sample both give the input image: a sample's input is its image.png")
    elif not (synthetic or sample):
        problems += [
            f"  {key}='oracle': needs ground truth: experiment=ground_truth sample=DIR, or experiment=synthetic"
            for key in NEEDS_GROUND_TRUTH
            if value(key) == "oracle"
        ]
    return problems
