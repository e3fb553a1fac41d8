"""The SwinV2 backbone of PoseAnything (Liu et al., "Swin Transformer V2", CVPR 2022), square input only.

Module and parameter names follow the official checkpoint's `backbone.*` keys. The three buffer
families (`relative_coords_table`, `relative_position_index`, `attn_mask`) are persistent because
the released files store them. Inference only: dropout and stochastic depth are left out (both are
the identity in eval mode).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SwinConfig:
    image_size: int = 256
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 16
    # Per stage: the window the ImageNet weights were pre-trained with (0: this one); it scales the position table.
    pretrained_window_sizes: tuple[int, ...] = (0, 0, 0, 0)
    upsample: str = "bilinear"  # how the stride-32 map is doubled: "bilinear", or "deconv" (learned, pre-2024 Base)
    mlp_ratio: int = 4
    num_classes: int = 1000  # the ImageNet head the checkpoint carries

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def log_spaced_coords_table(window: int, pretrained_window: int = 0) -> Tensor:
    """Relative (dy, dx) offsets inside a window, scaled to [-8, 8] and log-spaced: [1, 2w-1, 2w-1, 2].

    With `pretrained_window` > 0 the offsets are scaled by that window instead, so a fine-tuned
    larger window reuses the pre-trained bias MLP (offsets beyond it extrapolate past +-8).
    """
    offsets = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)[None]
    table = table / ((pretrained_window or window) - 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(window: int) -> Tensor:
    """For each (query, key) token pair of a window, its row in the flattened coords table: [N, N] int64."""
    steps = torch.arange(window)
    coords = torch.stack(torch.meshgrid(steps, steps, indexing="ij")).flatten(1)  # [2, N] (row, col)
    relative = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, N, N], each in [0, 2w-2]
    return relative[0] * (2 * window - 1) + relative[1]


def window_partition(grid: Tensor, window: int) -> Tensor:
    """[B, H, W, C] -> [B, nW, window*window, C], windows in row-major order."""
    batch, height, width, channels = grid.shape
    grid = grid.view(batch, height // window, window, width // window, window, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, window * window, channels)


def window_merge(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of `window_partition`: [B, nW, window*window, C] -> [B, H, W, C]."""
    batch, channels = windows.shape[0], windows.shape[-1]
    grid = windows.view(batch, height // window, width // window, window, window, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


def shifted_window_mask(resolution: int, window: int, shift: int) -> Tensor:
    """Additive mask [nW, N, N] that keeps tokens from attending across the seams the cyclic shift creates."""
    region = torch.zeros(1, resolution, resolution, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bands:
        for cols in bands:
            region[:, rows, cols] = label
            label += 1
    labels = window_partition(region, window)[0, :, :, 0]  # [nW, N]
    different = labels[:, None, :] != labels[:, :, None]  # [nW, N, N]
    # -100 rather than -inf: the value the released weights were trained with.
    return torch.where(different, -100.0, 0.0)


class WindowAttention(nn.Module):
    """Cosine self-attention inside windows with a continuous (MLP-generated) relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, pretrained_window: int = 0):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        self.register_buffer("relative_coords_table", log_spaced_coords_table(window, pretrained_window))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        # SwinV2 has no key bias: the qkv bias is [q_bias, 0, v_bias].
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> Tensor:  # [heads, N, N]
        tokens = self.window * self.window
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)  # [(2w-1)^2, heads]
        bias = table[self.relative_position_index.view(-1)].view(tokens, tokens, self.num_heads)
        return 16 * torch.sigmoid(bias.permute(2, 0, 1))

    def forward(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        """windows [B, nW, N, C], mask [nW, N, N] or None -> [B, nW, N, C]."""
        batch, num_windows, tokens, channels = windows.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(windows, self.qkv.weight, bias).view(batch * num_windows, tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*nW, heads, N, d]
        # Cosine similarity times a learned per-head temperature, capped at 100.
        scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()  # [heads, 1, 1]
        q = F.normalize(q, dim=-1) * scale
        k = F.normalize(k, dim=-1)
        attn_bias = self.position_bias()  # [heads, N, N]
        if mask is not None:
            attn_bias = attn_bias + mask[:, None]  # [nW, heads, N, N]
            attn_bias = attn_bias.expand(batch, -1, -1, -1, -1).reshape(batch * num_windows, self.num_heads, tokens, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=1.0)  # [B*nW, heads, N, d]
        out = out.transpose(1, 2).reshape(batch, num_windows, tokens, channels)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and MLP, each added back after its own LayerNorm (SwinV2 res-post-norm)."""

    def __init__(
        self, dim: int, resolution: int, num_heads: int, window: int, shift: int, mlp_ratio: int, pretrained_window: int
    ):
        super().__init__()
        if resolution <= window:
            # One window covers the whole map: it shrinks to the map and there is nothing to shift.
            window, shift = resolution, 0
        self.resolution = resolution
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        # The pre-trained window is not clamped with the window, as in the official code.
        self.attn = WindowAttention(dim, window, num_heads, pretrained_window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        # Unshifted blocks store no mask, so their checkpoint has no `attn_mask` key.
        self.register_buffer("attn_mask", shifted_window_mask(resolution, window, shift) if shift else None)

    def forward(self, x: Tensor) -> Tensor:  # [B, L, C] -> [B, L, C], L = resolution^2
        batch, length, channels = x.shape
        grid = x.view(batch, self.resolution, self.resolution, channels)
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(grid, self.window), self.attn_mask)
        grid = window_merge(windows, self.window, self.resolution, self.resolution)
        if self.shift:
            grid = torch.roll(grid, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.norm1(grid.reshape(batch, length, channels))
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    """Halves the resolution: 2x2 neighbours concatenated (C -> 4C), reduced to 2C, then LayerNorm."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: Tensor) -> Tensor:  # [B, L, C] -> [B, L/4, 2C]
        batch, _, channels = x.shape
        grid = x.view(batch, self.resolution, self.resolution, channels)
        # Order (row, col) = (0,0), (1,0), (0,1), (1,1): the channel layout the weights expect.
        parts = (grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2])
        merged = torch.cat(parts, dim=-1).view(batch, -1, 4 * channels)
        return self.norm(self.reduction(merged))


class SwinStage(nn.Module):
    def __init__(self, stage: int, resolution: int, config: SwinConfig, downsample: bool):
        super().__init__()
        dim, window = config.embed_dim * 2**stage, config.window_size
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                resolution,
                config.num_heads[stage],
                window,
                0 if i % 2 == 0 else window // 2,
                config.mlp_ratio,
                config.pretrained_window_sizes[stage],
            )
            for i in range(config.depths[stage])
        )
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, image: Tensor) -> Tensor:  # [B, 3, H, W] -> [B, H/4 * W/4, C]
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))


class SwinTransformerV2(nn.Module):
    """Image [B, 3, S, S] -> feature map [B, C, S/16, S/16] (stride 32, then 2x upsampling).

    Small/Tiny: S = 256, C = 768, bilinear; the pre-2024 Base: S = 224, C = 1024, a learned deconvolution.
    """

    def __init__(self, config: SwinConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        resolution = config.image_size // config.patch_size
        num_stages = len(config.depths)
        self.layers = nn.ModuleList(
            SwinStage(i, resolution // 2**i, config, downsample=i < num_stages - 1) for i in range(num_stages)
        )
        self.norm = nn.LayerNorm(config.num_features)
        features = config.num_features
        if config.upsample == "deconv":
            self.upsample = nn.ConvTranspose2d(features, features, kernel_size=2, stride=2)
        else:
            self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        # ImageNet classifier: never used for keypoints, kept so the official state dict loads strictly.
        self.head = nn.Linear(config.num_features, config.num_classes)

    def forward(self, image: Tensor) -> Tensor:
        size = self.config.image_size
        if image.shape[-2:] != (size, size):
            raise ValueError(f"SwinV2 backbone expects {size}x{size} input, got {tuple(image.shape[-2:])}")
        x = self.patch_embed(image)  # [B, (S/4)^2, embed_dim]
        for stage in self.layers:
            x = stage(x)
        x = self.norm(x)  # [B, (S/32)^2, C]
        side = size // (self.config.patch_size * 2 ** (len(self.config.depths) - 1))
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, side, side)  # [B, C, S/32, S/32]
        return self.upsample(grid)  # [B, C, S/16, S/16]
