"""The learned metrics' models, loaded from whatever weights are available.

A metric whose weights are missing is not an error: its model stays None, `skipped` says what
to download and which config key takes it, and the scores report {"skipped": reason} for it.
PSNR and SSIM need no weights and are always there.
"""

from dataclasses import dataclass, field

import torch

from ..errors import DynaPoseError
from ..pretrained.clip import CLIP_BENCHMARK_MODEL, Clip, load_clip
from ..pretrained.i3d import InceptionI3d
from .fvd import load_i3d
from .lpips_metric import LPIPS_BACKBONES, LPIPS_BENCHMARK_NET, load_lpips


@dataclass
class MetricSuite:
    lpips: torch.nn.Module | None = None
    clip: Clip | None = None
    i3d: "InceptionI3d | torch.jit.ScriptModule | None" = None  # fvd.load_i3d's
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it is missing
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def build(
        cls,
        lpips_net: str = LPIPS_BENCHMARK_NET,  # eval.lpips_net
        clip_model: str = CLIP_BENCHMARK_MODEL,  # eval.clip_model: hub id or local directory
        fvd_i3d: str | None = None,  # eval.fvd_i3d: path to i3d_pretrained_400.pt or i3d_torchscript.pt
        device="cpu",
        local_only: bool = False,  # never download (CLIP from the hub cache or a local directory only)
    ) -> "MetricSuite":
        if lpips_net not in LPIPS_BACKBONES:
            raise DynaPoseError(f"eval.lpips_net={lpips_net!r}: expected one of {sorted(LPIPS_BACKBONES)}")
        suite = cls(device=torch.device(device))
        lpips_model, reason = load_lpips(lpips_net)
        if lpips_model is None:
            suite.skipped["lpips"] = f"{reason}; eval.lpips_net={lpips_net}"
        else:
            suite.lpips = lpips_model.to(suite.device)
        try:
            suite.clip = load_clip(clip_model, suite.device, local_only=local_only)
        except DynaPoseError as error:
            suite.skipped["clip"] = str(error)
        try:
            suite.i3d = load_i3d(fvd_i3d, suite.device)
        except DynaPoseError as error:
            suite.skipped["fvd"] = str(error)
        return suite

    def skip_entry(self, metric: str) -> dict[str, str]:
        """What the scores record for a metric without weights."""
        return {"skipped": self.skipped.get(metric, f"{metric}: no model in this MetricSuite")}
