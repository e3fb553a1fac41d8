"""PoseAnything's inference model and checkpoint loading.

`CapeModel` keeps the official top-level names (`backbone.*`, `keypoint_head.*`), so the released
mmcv checkpoints load with strict=True. Three variants share the code: the current Small and Tiny
(SwinV2 at 256x256) and the pre-February-2024 Base (SwinV2-B at 224x224, which the 1.0.0 GitHub
release may hold); `cape_from_state_dict` picks one from the checkpoint's tensor shapes.

A support image is encoded once (`encode_support`) and reused for any number of query frames
(`predict`), with the support broadcast over the query batch.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DynaPoseError, first_line
from .preprocess import HEATMAP_SIZE
from .swin_v2 import SwinConfig, SwinTransformerV2
from .transformer import KeypointTransformer, OffsetMLP, adjacency_from_skeleton, grid_position_encoding


@dataclass(frozen=True)
class CapeVariant:
    backbone: SwinConfig
    ffn_dim: int  # the keypoint transformer's feed-forward width
    # The support heatmap grid the tokens are pooled on: `data_cfg.heatmap_size` of the official configs,
    # 64 for all of them, whatever the input side.
    heatmap_size: int = HEATMAP_SIZE

    @property
    def input_size(self) -> int:
        """The side of the square network input, in pixels."""
        return self.backbone.image_size

    @property
    def heatmap_stride(self) -> float:
        """Network pixels per support heatmap cell: 4 for Small/Tiny (256 / 64), 3.5 for Base (224 / 64)."""
        return self.input_size / self.heatmap_size


# Tiny and Small differ only in the number of stage-2 blocks; Base is the pre-February-2024 configuration.
VARIANTS = {
    "tiny": CapeVariant(SwinConfig(depths=(2, 2, 6, 2)), ffn_dim=768),
    "small": CapeVariant(SwinConfig(depths=(2, 2, 18, 2)), ffn_dim=768),
    "base": CapeVariant(
        SwinConfig(
            image_size=224,
            embed_dim=128,
            depths=(2, 2, 18, 2),
            num_heads=(4, 8, 16, 32),
            window_size=14,
            pretrained_window_sizes=(12, 12, 12, 6),
            upsample="deconv",
        ),
        ffn_dim=1024,
    ),
}


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
    layers: Tensor  # [L, B, K, 2] (x, y) in [0, 1] over the S x S query, one set per decoder layer; [-1] is final
    proposals: Tensor  # [B, K, 2] global soft-argmax proposals (the official output's `points[0]`)
    similarity: Tensor  # [B, K, h, h] support-token / query-cell similarity logits (h = S / 16: 16, Base 14)


class CapeHead(nn.Module):
    """The official `PoseHead`: support keypoint tokens, projections and the keypoint transformer."""

    def __init__(self, in_channels: int = 768, ffn_dim: int = 768, dim: int = 256, num_layers: int = 3):
        super().__init__()
        self.input_proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.query_proj = nn.Linear(in_channels, dim)  # projects the support keypoint tokens
        self.kpt_branch = nn.ModuleList(OffsetMLP(dim) for _ in range(num_layers))
        self.transformer = KeypointTransformer(dim, num_heads=8, ffn_dim=ffn_dim, num_layers=num_layers)

    def support_tokens(self, features: Tensor, heatmaps: Tensor, visible: Tensor) -> Tensor:
        """features [S, C, h, h], heatmaps [S, K, M, M], visible [S, K] (0/1) -> tokens [S, K, 256].

        Each token is the heatmap-weighted average of the support features, resized (bilinear, as the
        official head) from h = input side / 16 to the heatmap's grid M, so a token pools where its heatmap lies.
        """
        features = F.interpolate(features, size=heatmaps.shape[-2:], mode="bilinear", align_corners=False)
        weights = heatmaps / (heatmaps.sum(dim=(-2, -1), keepdim=True) + 1e-8)  # [S, K, M, M]
        tokens = weights.flatten(2) @ features.flatten(2).transpose(1, 2)  # [S, K, C]
        return self.query_proj(tokens * visible[..., None])

    def forward(self, features: Tensor, support: SupportState) -> CapePrediction:
        """Query features [B, C, h, h] (h = 16 for Small/Tiny, 14 for Base) and a support state of batch B
        -> keypoints per decoder layer."""
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

    Images are [B, 3, S, S] ImageNet-normalised RGB, S = `input_size` (see `preprocess.resize_pad`). Predictions
    are differentiable with respect to the query pixels; the only cuts are the official ones (the
    arg-max that picks each proposal's 3x3 window, and the decoder's detached reference points).
    """

    def __init__(self, variant: CapeVariant = VARIANTS["small"]):
        super().__init__()
        self.variant = variant
        self.backbone = SwinTransformerV2(variant.backbone)
        self.keypoint_head = CapeHead(in_channels=variant.backbone.num_features, ffn_dim=variant.ffn_dim)

    @property
    def input_size(self) -> int:
        return self.variant.input_size

    @property
    def heatmap_size(self) -> int:
        """The side of the support heatmaps `encode_support` takes (`preprocess.support_heatmaps`)."""
        return self.variant.heatmap_size

    def encode_support(
        self, support: Tensor, heatmaps: Tensor, visible: Tensor, skeleton: list[tuple[int, int]]
    ) -> SupportState:
        """support [S, 3, S', S'], heatmaps [S, K, M, M] with M = `heatmap_size` (`preprocess.support_heatmaps`
        at this model's `input_size` and `heatmap_size`), visible [S, K] 0/1, skeleton: 0-based keypoint pairs
        shared by the batch."""
        if heatmaps.shape[:2] != visible.shape or heatmaps.shape[0] != support.shape[0]:
            raise ValueError(f"support {support.shape}, heatmaps {heatmaps.shape}, visible {visible.shape} disagree")
        grid = self.heatmap_size
        if heatmaps.shape[-2:] != (grid, grid):
            # Any grid would pool, but the weights were trained on this one: another footprint is a silent bias.
            raise ValueError(f"support heatmaps are {tuple(heatmaps.shape[-2:])}, this model pools on {grid}x{grid}")
        ignored = visible == 0  # [S, K]
        decoder_ignored = ignored.clone()
        decoder_ignored[ignored.all(dim=-1), 0] = False
        features = self.backbone(support)  # [S, C, h, h]
        tokens = self.keypoint_head.support_tokens(features, heatmaps, (~ignored).to(features.dtype))
        return SupportState(tokens, ignored, decoder_ignored, adjacency_from_skeleton(skeleton, decoder_ignored))

    def predict_all(self, query: Tensor, support: SupportState) -> CapePrediction:
        """query [B, 3, S, S] against a support state of batch 1 or B."""
        return self.keypoint_head(self.backbone(query), support.expand(query.shape[0]))

    def predict(self, query: Tensor, support: SupportState) -> Tensor:
        """Keypoints [B, K, 2], (x, y) in [0, 1] over the square query: the last decoder layer."""
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


def build_cape(variant: str = "small") -> CapeModel:
    """A randomly initialised PoseAnything model of a released variant ("small", "tiny" or "base"), in eval mode."""
    if variant not in VARIANTS:
        raise DynaPoseError(f"unknown PoseAnything variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return CapeModel(VARIANTS[variant]).eval()


def cape_from_state_dict(state_dict: dict[str, Tensor], source: str = "state dict") -> CapeModel:
    """The model of the variant `state_dict` holds (official `backbone.*`/`keypoint_head.*` keys), strictly loaded."""
    state = {key.removeprefix("module."): value for key, value in state_dict.items()}
    model = build_cape(variant_of(state, source))
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
    """A PoseAnything model (Small, Tiny or Base, read from the file) from an official mmcv checkpoint, in eval mode."""
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
        reason = first_line(error)
        raise DynaPoseError(
            f"cannot read PoseAnything checkpoint {path} ({reason}): if it is a damaged download, delete it "
            "and rerun to fetch it again"
        ) from None


def variant_of(state: dict[str, Tensor], source: str = "state dict") -> str:
    """ "small", "tiny" or "base", from the patch embedding's width and the number of SwinV2 stage-2 blocks."""
    patch = state.get("backbone.patch_embed.proj.weight")
    width = None if patch is None else patch.shape[0]  # [embed_dim, 3, 4, 4]
    blocks = len({key.split(".")[4] for key in state if key.startswith("backbone.layers.2.blocks.")})
    for name, variant in VARIANTS.items():
        if (width, blocks) == (variant.backbone.embed_dim, variant.backbone.depths[2]):
            return name
    known = ", ".join(f"{v.backbone.embed_dim}/{v.backbone.depths[2]} ({name})" for name, v in VARIANTS.items())
    raise DynaPoseError(
        f"{source} is no known PoseAnything variant: patch-embedding width {width} with {blocks} SwinV2 stage-2 "
        f"blocks (known width/blocks: {known})"
    )
