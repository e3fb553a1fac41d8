"""Pretrained weights: a Hugging Face repo id, a direct https URL or a local path -> a local path.

Every model the pipeline loads (Zero123, Stable Video Diffusion, ...) goes through
`resolve_pretrained`, so a missing download fails the same way everywhere: at once,
before any training, with a message that says what to download, under which licence,
and which config key takes the local path. It raises MissingWeights, which the pre-flight
(weights.require_weights) gathers over every model into one message.
"""

from dataclasses import dataclass
from pathlib import Path

from ..downloads import checksum_record, fetch_file, recorded_checksum_differs
from ..errors import DynaPoseError, first_line


@dataclass(frozen=True)
class PretrainedModel:
    """Where a model comes from, and how a user points the pipeline at their own copy."""

    name: str  # what the user knows it as, e.g. "Zero123-XL"
    location: str | None  # hub repo id, https URL of one file, or a local directory or file; None: manual download
    config_key: str  # the config key that takes a local path, e.g. "static.model"
    licence: str
    download: str | None = None  # where to get weights off the hub (then only local paths and URLs work)
    files: tuple[str, ...] | None = None  # the repo files to fetch (glob patterns); None: all but *.ckpt
    own_copy: str | None = None  # how to give your own copy, when it is not `config_key=/path/to/it`

    @property
    def is_local(self) -> bool:
        return self.location is not None and Path(self.location).expanduser().exists()


class MissingWeights(DynaPoseError):
    """`model` is neither on disk nor fetchable. The message says what to do for this model alone;
    `reason` is the short why, for the pre-flight's one message about every missing model."""

    def __init__(self, model: PretrainedModel, reason: str, message: str):
        super().__init__(message)
        self.model = model
        self.reason = reason


def resolve_pretrained(model: PretrainedModel, local_only: bool = False) -> Path:
    """The local path holding `model`: the path itself, the hub or torch hub cache, or a fresh download.

    `local_only` never touches the network (also implied by HF_HUB_OFFLINE=1).
    """
    if model.is_local:
        path = Path(model.location).expanduser()
        if path.is_file() and recorded_checksum_differs(path):
            raise damaged_file(model, path, f"fetch it again, or pass another copy with {model.config_key}=")
        return path
    if is_url(model.location):
        return resolve_url(model, local_only)
    if model.download is not None:
        reason = f"{model.config_key} is not set" if model.location is None else f"{model.location!r} does not exist"
        raise MissingWeights(model, reason, manual_download_message(model))
    if looks_like_path(model.location):
        reason = f"{model.location!r}: no such directory"
        raise MissingWeights(model, reason, f"{model.config_key}={reason}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        try:
            return Path(snapshot_download(model.location, local_files_only=True))
        except LocalEntryNotFoundError:
            if local_only:
                raise
            return Path(snapshot_download(model.location, **download_patterns(model)))
    except (HfHubHTTPError, HFValidationError, OSError) as error:
        reason = first_line(error)
        raise MissingWeights(model, reason, missing_weights_message(model, reason)) from None


def is_url(location: str | None) -> bool:
    return location is not None and location.startswith(("https://", "http://"))


def url_cache(url: str) -> Path:
    """Where a direct download is kept: torch hub's checkpoints directory, as torch.hub names its own files."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / url.split("?")[0].rsplit("/", 1)[-1]


def resolve_url(model: PretrainedModel, local_only: bool) -> Path:
    """The cached copy of the file at `model.location`, downloaded first (resumably) when online."""
    from huggingface_hub import constants

    target = url_cache(model.location)
    offline = local_only or constants.HF_HUB_OFFLINE
    if target.exists() and recorded_checksum_differs(target):
        if offline:
            raise damaged_file(model, target, "delete it and run once with network access to fetch it again")
    elif target.exists():
        return target
    if offline:
        reason = f"not in {target.parent} and offline"
    else:
        try:
            fetch_file(model.location, target, model.name)
            return target
        except DynaPoseError as error:
            reason = str(error)
    message = (
        f"{model.name} weights are not available ({reason}).\n"
        f"  Download {model.location} (licence: {model.licence}) on a machine with internet access,\n"
        f"  then pass the file with {model.config_key}=/path/to/it"
    )
    raise MissingWeights(model, reason, message)


def damaged_file(model: PretrainedModel, path: Path, remedy: str) -> MissingWeights:
    """A downloaded file whose bytes no longer match the SHA-256 recorded when it was fetched."""
    reason = f"{path} is damaged: it no longer matches the checksum in {checksum_record(path).name}"
    return MissingWeights(model, reason, f"{model.name} weights: {reason}; {remedy}")


def unloadable_folder_message(name: str, directory: Path, reason: str) -> str:
    """A downloaded model folder whose files a library could not read: most often a damaged download."""
    return (
        f"cannot load {name} from {directory} ({reason}): if a download was damaged, delete that folder "
        "(or its entry in the Hugging Face cache) and rerun to fetch it again"
    )


def download_patterns(model: PretrainedModel) -> dict:
    """`snapshot_download`'s file filter for `model`: its own files, or all but the single-file *.ckpt copies."""
    if model.files is not None:
        return {"allow_patterns": list(model.files)}
    return {"ignore_patterns": ["*.ckpt"]}


def looks_like_path(location: str) -> bool:
    """Hub ids are exactly `owner/name`; anything else a user types is meant as a path."""
    return location.startswith(("/", ".", "~")) or location.count("/") != 1


def manual_download_message(model: PretrainedModel) -> str:
    where = "is not set" if model.location is None else f"{model.location!r} does not exist"
    return (
        f"{model.name} weights are needed but {model.config_key} {where}.\n"
        f"  Download them from {model.download} (licence: {model.licence}),\n"
        f"  then pass the file with {model.config_key}=/path/to/it"
    )


def missing_weights_message(model: PretrainedModel, reason: str) -> str:
    name = model.location.split("/")[-1]
    include = "".join(f' --include "{pattern}"' for pattern in model.files or ())
    return (
        f"{model.name} weights are not available: {model.location!r} is not a local directory and could not be "
        f"fetched from the Hugging Face hub ({reason}).\n"
        f"  Download them on a machine with internet access (accept the licence first: {model.licence}):\n"
        f"    hf download {model.location}{include} --local-dir /path/to/{name}\n"
        f"  then pass the directory with {model.config_key}=/path/to/{name}"
    )
