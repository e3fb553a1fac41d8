"""Every model in one directory: `weights_dir=`, the pre-flight's one message, scripts/download_weights.py.

`scripts/download_weights.py --dir weights/` lays the models out like this, and
`weights_dir=weights/` then resolves each of them from there, with no network:

| --only         | under weights_dir                        | default source                    | stands in for        |
|----------------|------------------------------------------|-----------------------------------|----------------------|
| zero123        | zero123-xl/                              | ashawkey/zero123-xl-diffusers     | static/dynamic.model |
| stable_zero123 | stable-zero123/                          | ashawkey/stable-zero123-diffusers | static/dynamic.model |
| svd            | svd-img2vid/ (fp16 only)                 | stabilityai/…-img2vid             | video.model          |
| svd_xt         | svd-img2vid-xt/ (fp16 only)              | stabilityai/…-img2vid-xt          | video.model          |
| poseanything   | poseanything/demo_b.pth                  | PoseAnything's GitHub release     | keypoints.checkpoint |
| rembg          | rembg/u2net.onnx                         | rembg's GitHub release            | U2NET_HOME           |
| clip (--eval)  | clip-vit-base-patch32/                   | openai/clip-vit-base-patch32      | eval.py clip_model   |
| i3d_400 (--eval) | i3d/i3d_pretrained_400.pt              | Google Drive (Consistent4D, DisCo) | eval.py fvd_i3d     |
| i3d            | i3d/i3d_torchscript.pt                   | Dropbox (StyleGAN-V)              | eval.py fvd_i3d      |
| lpips (--eval) | torch/hub/checkpoints/vgg16-397923af.pth | download.pytorch.org              | TORCH_HOME           |

The default download (no --only) is what the default pipeline loads: zero123, svd, poseanything, rembg.

Per-model keys win: `weights_dir` replaces only a model's default source (a key left at its
default, or naming that same hub repo); a key naming a local path or another repo is used as
it is. The eval models are not read from weights_dir (eval.py has its own keys); the download
script prints the settings that point eval.py at them.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .data.image import REMBG_MODEL, REMBG_MODEL_URL
from .downloads import fetch_file, recorded_checksum_differs
from .errors import DynaPoseError, first_line
from .eval.fvd import I3D_DOWNLOAD, i3d_weights
from .pretrained import (
    MissingWeights,
    PretrainedModel,
    damaged_file,
    download_patterns,
    looks_like_path,
    resolve_pretrained,
)
from .pretrained.clip import clip_weights
from .pretrained.i3d import I3D_400_URL
from .pretrained.poseanything import POSEANYTHING_RELEASE, poseanything_weights
from .pretrained.svd import SVD_MODELS
from .priors.zero123 import ZERO123_MODELS

DEFAULT_DIR = "weights"
SCRIPT = "python scripts/download_weights.py"
LOGIN = "gated: accept its licence on that page while logged in, then run `hf auth login` here"
LPIPS_VGG_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
REMBG_OWN_COPY = (
    f"put {REMBG_MODEL}.onnx in <dir>/rembg/ and pass weights_dir=<dir>, "
    "or put it in the directory that the environment variable U2NET_HOME names"
)


@dataclass(frozen=True)
class Weights:
    """A model the download script fetches, and where it lies under weights_dir."""

    key: str  # its name for --only
    model: PretrainedModel  # its default source, licence and config key
    path: str  # under weights_dir: a directory for a hub repo, else a file
    size: str  # shown before downloading
    url: str | None = None  # a direct download for a file off the hub
    gated: bool = False  # the hub repo needs its licence accepted and a login
    use: str | None = None  # how a later run points at it, when weights_dir does not; {dir} is the directory

    @property
    def source(self) -> str:
        if self.model.download is not None:
            return self.model.download
        gated = f" ({LOGIN})" if self.gated else ""
        return f"https://huggingface.co/{self.model.location}{gated}"


def _svd(key: str, path: str) -> Weights:
    return Weights(key, SVD_MODELS[key], path, "about 4.3 GB", gated=True)


PIPELINE = (
    Weights("zero123", ZERO123_MODELS["zero123"], "zero123-xl", "about 5 GB"),
    _svd("svd", "svd-img2vid"),
    Weights("poseanything", poseanything_weights(POSEANYTHING_RELEASE), "poseanything/demo_b.pth",
            "not published (the progress bar shows it)", url=POSEANYTHING_RELEASE),
    Weights("rembg", PretrainedModel("rembg U²-Net", None, "U2NET_HOME", "MIT (rembg); U²-Net: Apache-2.0",
                                     download=REMBG_MODEL_URL, own_copy=REMBG_OWN_COPY),
            f"rembg/{REMBG_MODEL}.onnx", "176 MB", url=REMBG_MODEL_URL),
)  # fmt: skip
ALTERNATIVES = (
    Weights("stable_zero123", ZERO123_MODELS["stable_zero123"], "stable-zero123", "about 5 GB"),
    _svd("svd_xt", "svd-img2vid-xt"),
)
# Consistent4D's FVD network (its README links the file; no checksum is published: ours is recorded at download).
I3D_400 = PretrainedModel(
    "I3D Kinetics-400, pytorch-i3d (Consistent4D's FVD network)",
    None,
    "eval.fvd_i3d",
    "Apache-2.0 (pytorch-i3d; weights from DeepMind's kinetics-i3d)",
    download=I3D_400_URL,
)
EVALUATION = (
    Weights("clip", clip_weights(), "clip-vit-base-patch32", "about 1.2 GB",
            use="clip_model={dir}/clip-vit-base-patch32 (scripts/eval.py)"),
    Weights("i3d_400", I3D_400, "i3d/i3d_pretrained_400.pt", "about 49 MB", url=I3D_400_URL,
            use="fvd_i3d={dir}/i3d/i3d_pretrained_400.pt (scripts/eval.py)"),
    Weights("lpips", PretrainedModel("LPIPS VGG16 backbone", None, "TORCH_HOME", "BSD-3-Clause (torchvision)",
                                     download=LPIPS_VGG_URL), "torch/hub/checkpoints/vgg16-397923af.pth", "528 MB",
            url=LPIPS_VGG_URL, use="TORCH_HOME={dir}/torch (environment variable, for LPIPS)"),
)  # fmt: skip
EVALUATION_ALTERNATIVES = (  # --only i3d: StyleGAN-V's I3D, the features of most other FVDs
    Weights("i3d", i3d_weights(None), "i3d/i3d_torchscript.pt", "about 50 MB", url=I3D_DOWNLOAD,
            use="fvd_i3d={dir}/i3d/i3d_torchscript.pt (scripts/eval.py)"),
)  # fmt: skip
CATALOGUE = {weights.key: weights for weights in (*PIPELINE, *ALTERNATIVES, *EVALUATION, *EVALUATION_ALTERNATIVES)}


def catalogue_entry(model: PretrainedModel) -> Weights | None:
    """The catalogue's entry when `model` is that entry's default source (same model, same location)."""
    for weights in CATALOGUE.values():
        if (weights.model.name, weights.model.location) == (model.name, model.location):
            return weights
    return None


def in_weights_dir(model: PretrainedModel, weights_dir: str | None) -> PretrainedModel:
    """`model` read from weights_dir when it is a default source and its copy is there; else as it was."""
    weights = catalogue_entry(model)
    if weights_dir is None or weights is None:
        return model
    copy = Path(weights_dir).expanduser() / weights.path
    return replace(model, location=str(copy)) if copy.exists() else model


def use_weights_dir(cfg: DictConfig, models: Iterable[PretrainedModel]) -> list[PretrainedModel]:
    """The models with weights_dir copies swapped in; their config keys are pointed at the copies too,
    because the stages resolve their weights from the config again when they load them."""
    models = list(models)
    located = [in_weights_dir(model, cfg.weights_dir) for model in models]
    for before, after in zip(models, located):
        if after is not before:
            OmegaConf.update(cfg, after.config_key, after.location)
    return located


def require_weights(cfg: DictConfig, models: Iterable[PretrainedModel], rembg_need: str | None = None) -> None:
    """Resolve every model, weights_dir's copies first (the hub fetches what it can), and rembg's U²-Net
    when `rembg_need` says why the run needs it; one DynaPoseError naming every one that is missing or damaged."""
    models = list(models)
    missing = []
    for (model, keys), located in _by_source(models, use_weights_dir(cfg, models)).values():
        try:
            resolve_pretrained(located)
        except MissingWeights as error:
            missing.append((error, model, keys))
    if rembg_need is not None:
        try:
            locate_rembg(rembg_need)
        except MissingWeights as error:
            missing.append((error, error.model, [error.model.config_key]))
    if missing:
        raise DynaPoseError(missing_models_message(missing, cfg.weights_dir))


def _by_source(models: list[PretrainedModel], located: list[PretrainedModel]) -> dict:
    """((model, its config keys), where it is read from) per source: static and dynamic share Zero123,
    resolved and reported once."""
    groups = {}
    for model, copy in zip(models, located):
        (_, keys), _ = groups.setdefault((model.name, model.location), ((model, []), copy))
        keys.append(model.config_key)
    return groups


def missing_models_message(missing: list[tuple[MissingWeights, PretrainedModel, list[str]]], weights_dir) -> str:
    """`missing`: (why, the model as configured, its config keys); a weights_dir copy is fetched again
    by the same command that fetched it."""
    lines = [f"{len(missing)} pretrained model(s) missing; nothing was run and no run directory was made:"]
    for error, model, keys in missing:
        lines.append(f"  - {model.name}: {error.reason}")
        source = where_from(model)
        lines.append(f"      licence: {model.licence}" + (f"; from: {source}" if source else ""))
        own_copy = model.own_copy or ", ".join(f"{key}=/path/to/it" for key in keys)
        lines.append(f"      your own copy: {own_copy}")
    fetchable = [weights.key for weights in map(catalogue_entry, (model for _, model, _ in missing)) if weights]
    if fetchable:
        directory = weights_dir or DEFAULT_DIR
        which = "them all" if len(fetchable) == len(missing) else "those with a default source"
        lines.append(f"Fetch {which} with:\n    {download_command(directory, fetchable)}")
        lines.append(f"then add weights_dir={directory} to the command (or give each your own copy, as above).")
    return "\n".join(lines)


def where_from(model: PretrainedModel) -> str | None:
    """Where to download `model`; None for a local path the user gave (the reason names it)."""
    weights = catalogue_entry(model)
    if weights is not None:
        return weights.source
    if model.download is not None:
        return model.download
    return None if looks_like_path(model.location) else f"https://huggingface.co/{model.location}"


def download_command(directory: str, keys: list[str]) -> str:
    return f"{SCRIPT} --dir {directory} --only {','.join(keys)}"


def point_rembg_at(weights_dir: str | None) -> None:
    """rembg reads its model from U2NET_HOME: set it to weights_dir's copy, unless the user set it already."""
    home = Path(weights_dir).expanduser() / "rembg" if weights_dir else None
    if home is not None and (home / f"{REMBG_MODEL}.onnx").exists() and not os.environ.get("U2NET_HOME"):
        os.environ["U2NET_HOME"] = str(home)


def locate_rembg(need: str) -> Path:
    """rembg's U²-Net file where rembg will look for it, fetched there first when online (as URL models are).

    rembg looks in U2NET_HOME (weights_dir's copy, once point_rembg_at ran) or in its own home;
    the model is not loaded here. `need` says why the run needs it, for the message. Raises
    MissingWeights: rembg is not installed, or the file is missing offline, failed to download,
    or no longer matches the checksum recorded when it was fetched.
    """
    from huggingface_hub import constants

    model = CATALOGUE["rembg"].model
    why = f"needed to cut the object out, as {need}"
    try:
        from rembg.sessions.u2net import U2netSession
    except ImportError:
        reason = f"rembg is not installed (pip install 'rembg[cpu]'); {why}"
        raise MissingWeights(model, reason, reason) from None
    name = f"{REMBG_MODEL}.onnx"
    found = U2netSession.resolve_existing(name)
    if found is not None and recorded_checksum_differs(Path(found)):
        damaged = damaged_file(model, Path(found), "delete it and rerun to fetch it again")
        raise MissingWeights(model, f"{damaged.reason}; {why}", str(damaged))
    if found is not None:
        return Path(found)
    target = Path(U2netSession.model_dir()) / name  # where rembg itself would download it
    if constants.HF_HUB_OFFLINE:
        reason = f"{name} is in neither {target.parent} nor {U2netSession.legacy_home()}, and offline"
    else:
        try:
            fetch_file(REMBG_MODEL_URL, target, model.name)
            return target
        except DynaPoseError as error:
            reason = str(error)
    message = f"{model.name} weights are not available ({reason}): download {REMBG_MODEL_URL}, then {model.own_copy}"
    raise MissingWeights(model, f"{reason}; {why}", message)


# scripts/download_weights.py: choose, list (sizes, licences, sources), fetch, print the offline override.


def select(only: list[str] | None, with_eval: bool) -> list[Weights]:
    """The models to fetch: those --only names, else the default pipeline's; with --eval, the eval models too."""
    unknown = [key for key in only or () if key not in CATALOGUE]
    if unknown:
        raise DynaPoseError(f"unknown model(s) in --only: {', '.join(unknown)}; choose from {', '.join(CATALOGUE)}")
    chosen = [CATALOGUE[key] for key in only] if only else list(PIPELINE)
    return chosen + [weights for weights in EVALUATION if with_eval and weights not in chosen]


def describe(weights: Weights, directory: Path) -> str:
    """What the user agrees to before the download starts: the model, its size, licence, source and place."""
    return (
        f"{weights.model.name} [{weights.key}], {weights.size}\n"
        f"    licence: {weights.model.licence}\n"
        f"    from:    {weights.source}\n"
        f"    into:    {directory / weights.path}"
    )


def fetch(weights: Weights, directory: Path) -> None:
    """Download one model into its place under `directory`; a rerun resumes an interrupted download."""
    target = directory / weights.path
    if weights.url is None:
        fetch_hub_repo(weights.model, target)
    else:
        fetch_file(weights.url, target, weights.model.name)
        if target.suffix == ".pth":
            refuse_web_page(target, weights.model)


def fetch_hub_repo(model: PretrainedModel, target: Path) -> None:
    """The repo's files into `target` (the same files a run would take); huggingface_hub resumes partial files."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    try:
        snapshot_download(model.location, local_dir=target, **download_patterns(model))
    except GatedRepoError:
        raise DynaPoseError(
            f"{model.name} is gated: accept its licence on https://huggingface.co/{model.location} while logged "
            f"in, run `hf auth login` here, then rerun this command"
        ) from None
    except (HfHubHTTPError, OSError) as error:
        raise DynaPoseError(f"{model.name}: downloading {model.location} failed ({first_line(error)})") from None


def refuse_web_page(path: Path, model: PretrainedModel) -> None:
    """Google Drive answers some requests with an HTML page instead of the file: keep no such "checkpoint"."""
    with open(path, "rb") as file:
        start = file.read(64).lstrip().lower()
    if start.startswith((b"<!doctype", b"<html")):
        path.unlink()
        raise DynaPoseError(
            f"{model.name}: the server sent a web page, not the checkpoint; download it by hand from "
            f"{model.download} and save it as {path}"
        )


def offline_settings(chosen: list[Weights], directory: Path) -> list[str]:
    """What makes later runs offline: weights_dir for the pipeline, and each eval model's own setting."""
    settings = [f"weights_dir={directory} (scripts/train.py)"] if any(weights.use is None for weights in chosen) else []
    return settings + [weights.use.format(dir=directory) for weights in chosen if weights.use is not None]
