"""PoseAnything's inference model and checkpoint loading.

`CapeModel` keeps the official top-level names (`backbone.*`, `keypoint_head.*`), so the released
mmcv checkpoints load with strict=True. A support image is encoded once (`encode_support`) and
reused for any number of query frames (`predict`), with the support broadcast over the query batch.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DynaPoseError
from .swin_v2 import SwinConfig, SwinTransformerV2
from .transformer import KeypointTransformer, OffsetMLP, adjacency_from_skeleton, grid_position_encoding

# Released sizes differ only in the number of SwinV2 blocks per stage.
SIZES = {"tiny": (2, 2, 6, 2), "small": (2, 2, 18, 2)}


@dataclass
class SupportState:
    """One support image's keypoint tokens and graph, computed once for any number of query frames."""

    tokens: Tensor  # [S, K, 256] projected keypoint tokens, zero for invisible keypoints
    ignored: Tensor  # [S, K] True where the support keypoint is invisible: an ignored attention key
    decoder_ignored: Tensor  # [S, K] `ignored`, but keypoint 0 kept when all are ignored (avoids NaN attention)
    adjacency: Tensor  # [S, 2, K, K] GCN kernels from the skeleton

    def expand(self, batch: int) -> "SupportState":
        """This state for `batch` query frames: as is if S == batch, broadcast if S == 1."""
        size = self.tokens.shape[0]
        if size == batch:
            return self
        if size != 1:
            raise ValueError(f"support batch {size} cannot pair with query batch {batch}; use 1 or {batch}")
        return SupportState(
            self.tokens.expand(batch, -1, -1),
            self.ignored.expand(batch, -1),
            self.decoder_ignored.expand(batch, -1),
            self.adjacency.expand(batch, -1, -1, -1),
        )


@dataclass
class CapePrediction:
    layers: Tensor  # [L, B, K, 2] (x, y) in [0, 1] over the 256x256 query, one set per decoder layer; [-1] is final
    proposals: Tensor  # [B, K, 2] global soft-argmax proposals (the official output's `points[0]`)
    similarity: Tensor  # [B, K, 16, 16] support-token / query-cell similarity logits


class CapeHead(nn.Module):
    """The official `PoseHead`: support keypoint tokens, projections and the keypoint transformer."""

    def __init__(self, in_channels: int = 768, dim: int = 256, num_layers: int = 3):
        super().__init__()
        self.input_proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.query_proj = nn.Linear(in_channels, dim)  # projects the support keypoint tokens
        self.kpt_branch = nn.ModuleList(OffsetMLP(dim) for _ in range(num_layers))
        self.transformer = KeypointTransformer(dim, num_heads=8, ffn_dim=768, num_layers=num_layers)

    def support_tokens(self, features: Tensor, heatmaps: Tensor, visible: Tensor) -> Tensor:
        """features [S, C, 16, 16], heatmaps [S, K, 64, 64], visible [S, K] (0/1) -> tokens [S, K, 256].

        Each token is the heatmap-weighted average of the support features, upsampled to heatmap size.
        """
        features = F.interpolate(features, size=heatmaps.shape[-2:], mode="bilinear", align_corners=False)
        weights = heatmaps / (heatmaps.sum(dim=(-2, -1), keepdim=True) + 1e-8)  # [S, K, 64, 64]
        tokens = weights.flatten(2) @ features.flatten(2).transpose(1, 2)  # [S, K, C]
        return self.query_proj(tokens * visible[..., None])

    def forward(self, features: Tensor, support: SupportState) -> CapePrediction:
        """Query features [B, C, 16, 16] and a support state of batch B -> keypoints per decoder layer."""
        image = self.input_proj(features)  # [B, 256, H, W]
        height, width = image.shape[-2:]
        grid_pos = grid_position_encoding(height, width, image.device)  # [HW, 256]
        transformer = self.transformer
        memory, tokens = transformer.encoder(
            image.flatten(2).transpose(1, 2), grid_pos, support.tokens, support.ignored
        )
        proposals, local_proposals, similarity = transformer.proposal_generator(memory, tokens, height, width)
        layers = transformer.decoder(
            tokens, memory, grid_pos, local_proposals, support.decoder_ignored, support.adjacency, self.kpt_branch
        )
        return CapePrediction(layers, proposals, similarity)


class CapeModel(nn.Module):
    """PoseAnything: keypoints of a query image from a support image annotated with K keypoints and a skeleton.

    Images are [B, 3, 256, 256] ImageNet-normalised RGB (see `preprocess.resize_pad`). Predictions
    are differentiable with respect to the query pixels; the only cuts are the official ones (the
    arg-max that picks each proposal's 3x3 window, and the decoder's detached reference points).
    """

    def __init__(self, depths: tuple[int, ...] = SIZES["small"]):
        super().__init__()
        self.backbone = SwinTransformerV2(SwinConfig(depths=depths))
        self.keypoint_head = CapeHead(in_channels=self.backbone.config.num_features)

    def encode_support(
        self, support: Tensor, heatmaps: Tensor, visible: Tensor, skeleton: list[tuple[int, int]]
    ) -> SupportState:
        """support [S, 3, 256, 256], heatmaps [S, K, 64, 64] (`preprocess.support_heatmaps`), visible [S, K] 0/1,
        skeleton: 0-based keypoint pairs shared by the batch."""
        if heatmaps.shape[:2] != visible.shape or heatmaps.shape[0] != support.shape[0]:
            raise ValueError(f"support {support.shape}, heatmaps {heatmaps.shape}, visible {visible.shape} disagree")
        ignored = visible == 0  # [S, K]
        decoder_ignored = ignored.clone()
        decoder_ignored[ignored.all(dim=-1), 0] = False
        features = self.backbone(support)  # [S, 768, 16, 16]
        tokens = self.keypoint_head.support_tokens(features, heatmaps, (~ignored).to(features.dtype))
        return SupportState(tokens, ignored, decoder_ignored, adjacency_from_skeleton(skeleton, decoder_ignored))

    def predict_all(self, query: Tensor, support: SupportState) -> CapePrediction:
        """query [B, 3, 256, 256] against a support state of batch 1 or B."""
        return self.keypoint_head(self.backbone(query), support.expand(query.shape[0]))

    def predict(self, query: Tensor, support: SupportState) -> Tensor:
        """Keypoints [B, K, 2], (x, y) in [0, 1] over the 256x256 query: the last decoder layer."""
        return self.predict_all(query, support).layers[-1]

    def forward(
        self,
        query: Tensor,
        support: Tensor,
        support_heatmaps: Tensor,
        support_visible: Tensor,
        skeleton: list[tuple[int, int]],
    ) -> Tensor:
        """One-shot prediction [B, K, 2]; see `encode_support` and `predict` to reuse the support."""
        return self.predict(query, self.encode_support(support, support_heatmaps, support_visible, skeleton))


def build_cape(size: str = "small") -> CapeModel:
    """A randomly initialised PoseAnything model of a released size ("small" or "tiny"), in eval mode."""
    if size not in SIZES:
        raise DynaPoseError(f"unknown PoseAnything size {size!r}; choose one of {', '.join(SIZES)}")
    return CapeModel(SIZES[size]).eval()


def cape_from_state_dict(state_dict: dict[str, Tensor], source: str = "state dict") -> CapeModel:
    """The model of the size `state_dict` holds (official `backbone.*`/`keypoint_head.*` keys), strictly loaded."""
    state = {key.removeprefix("module."): value for key, value in state_dict.items()}
    model = build_cape(_size_of(state, source))
    # The Swin buffers are fixed functions of the window layout: files without them get ours.
    for name, buffer in model.named_buffers():
        state.setdefault(name, buffer)
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if state[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped))
            if keys
        ]
        raise DynaPoseError(f"{source} does not match the PoseAnything model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return model


def load_cape_checkpoint(path: str | Path) -> CapeModel:
    """A PoseAnything model (Small or Tiny, picked from the file) from an official mmcv checkpoint, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise DynaPoseError(f"PoseAnything checkpoint not found: {path}")
    checkpoint = _read_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(value, Tensor) for value in state.values()):
        raise DynaPoseError(
            f"{path} holds no state dict of tensors (expected mmcv's {{'state_dict': ...}} or a bare one)"
        )
    return cape_from_state_dict(state, source=str(path))


class _Unread:
    """Stands in for a checkpoint object the weights-only unpickler may not build; it keeps nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _read_checkpoint(path: Path):
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # mmcv stores `meta` (and `optimizer`) next to the weights; they may hold objects the weights-only
            # unpickler refuses (numpy scalars, ConfigDicts, ...). We only need the tensors, so each refused
            # global is mapped to the inert `_Unread`: the file is still read by the weights-only unpickler and
            # no code from it runs. We never fall back to weights_only=False, which could execute the file.
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            with torch.serialization.safe_globals([(_Unread, name) for name in names]):
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DynaPoseError(f"cannot read PoseAnything checkpoint {path}: {error}") from error


def _size_of(state: dict[str, Tensor], source: str) -> str:
    """ "small" or "tiny", from the number of blocks in SwinV2 stage 2."""
    patch = state.get("backbone.patch_embed.proj.weight")
    if "backbone.upsample.weight" in state or (patch is not None and patch.shape[0] != 96):
        raise DynaPoseError(
            f"{source} looks like the pre-February-2024 PoseAnything (SwinV2-B/224); "
            "only the current Small/Tiny (SwinV2 at 256x256) checkpoints are supported"
        )
    blocks = {int(key.split(".")[4]) for key in state if key.startswith("backbone.layers.2.blocks.")}
    for size, depths in SIZES.items():
        if len(blocks) == depths[2]:
            return size
    raise DynaPoseError(
        f"{source} has {len(blocks)} SwinV2 stage-2 blocks; expected "
        + " or ".join(f"{depths[2]} ({size})" for size, depths in SIZES.items())
    )
