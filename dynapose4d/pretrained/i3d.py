"""I3D (Inception-v1 inflated to 3D, Kinetics-400) in plain PyTorch: the detector of Consistent4D's FVD.

Architecture: `InceptionI3d` of piergiaj/pytorch-i3d, file `pytorch_i3d.py` (Apache License 2.0, the repository's
LICENSE.txt), re-implemented here. Module names and parameter/buffer shapes are that file's, so the
`i3d_pretrained_400.pt` state dict loads strictly. That file is the one Consistent4D (yanqinJiang/Consistent4D)
`evaluation/compute_fvd.py` loads with `InceptionI3d(400, in_channels=3)`; its README links it from Google Drive,
borrowed from DisCo: https://drive.google.com/file/d/1J8w3fGj6H6kmcW9G8Ff6tRQofblaG5Vn/view

compute_fvd.py imports its own copy of the model, `evaluation/inception3d.py` (the same file as DisCo's
`tool/metrics/inception3d.py`), whose head differs from pytorch-i3d's: AvgPool3d kernel [1, 7, 7] instead of
[2, 7, 7], and `forward` averages the logits over time (`logits = logits.mean(2)`). `InceptionI3d.forward` here is
pytorch-i3d's; `i3d_features` is that copy's forward, the per-video feature compute_fvd.py uses.
"""

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DynaPoseError

I3D_400_DOWNLOAD = "https://drive.google.com/file/d/1J8w3fGj6H6kmcW9G8Ff6tRQofblaG5Vn/view"
# The same Google Drive file as a direct download (under Drive's 100 MB virus-scan page), for download_weights.py.
I3D_400_URL = "https://drive.google.com/uc?export=download&id=1J8w3fGj6H6kmcW9G8Ff6tRQofblaG5Vn"
I3D_SIZE = 224  # the frame size both heads assume: 224 / 32 = 7, the AvgPool3d's spatial kernel
NUM_CLASSES = 400  # Kinetics-400

# (endpoint, (b0, b1a, b1b, b2a, b2b, b3b) output channels) of pytorch_i3d.py's InceptionModules; a module's input
# is the previous one's output, b0 + b1b + b2b + b3b channels.
_MIXED_3 = (("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)))
_MIXED_4 = (
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
)
_MIXED_5 = (("Mixed_5b", (256, 160, 320, 32, 128, 128)), ("Mixed_5c", (384, 192, 384, 48, 128, 128)))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """pytorch-i3d's 'same' padding of one dimension of length `size`: (before, after), the odd one after.

    It is TensorFlow's rule (the weights come from DeepMind's TF I3D), so the output has ceil(size / stride) steps.
    """
    remainder = size % stride
    total = max(kernel - (stride if remainder == 0 else remainder), 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """x [N, C, T, H, W] zero-padded per dimension by `same_padding` (F.pad's zeros, as pytorch-i3d pads)."""
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]  # [(t), (h), (w)]
    return F.pad(x, [p for dim in reversed(pads) for p in dim])  # F.pad wants (w_before, w_after, h_..., t_...)


def _triple(value: int | tuple[int, ...]) -> tuple[int, int, int]:
    """A kernel or stride as (t, h, w): an int means the same in all three."""
    return tuple(value) if isinstance(value, tuple | list) else (value, value, value)


class MaxPool3dSamePadding(nn.MaxPool3d):
    """MaxPool3d after `pad_same` (no parameters; subclassing keeps nn.MaxPool3d's kernel_size/stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, _triple(self.kernel_size), _triple(self.stride)))


class Unit3D(nn.Module):
    """'Same'-padded Conv3d, then BatchNorm3d and ReLU: pytorch-i3d's Unit3D (submodules `conv3d`, `bn`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm: bool = True, activation: bool = True, bias: bool = False):  # fmt: skip
        super().__init__()
        self.kernel, self.stride, self.activation = _triple(kernel), _triple(stride), activation
        # padding=0: the padding depends on the input size, so forward adds it
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        # eps and momentum of the TF original, as pytorch-i3d sets them
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; 3x3x3 max pool -> 1x1x1."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], kernel=3)
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], kernel=3)
        self.b3a = MaxPool3dSamePadding(kernel_size=3, stride=1)
        self.b3b = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


def _mixed(rows, in_channels: int) -> tuple[list[tuple[str, nn.Module]], int]:
    """InceptionModules of `rows`, each fed the previous one's output; and the last one's output channels."""
    layers = []
    for name, widths in rows:
        layers.append((name, InceptionModule(in_channels, widths)))
        in_channels = layers[-1][1].out_channels
    return layers, in_channels


def _trunk(in_channels: int) -> tuple[list[tuple[str, nn.Module]], int]:
    """pytorch-i3d's endpoints Conv3d_1a_7x7 .. Mixed_5c in order, and the trunk's output channels (1024)."""
    mixed_3, width_3 = _mixed(_MIXED_3, 192)
    mixed_4, width_4 = _mixed(_MIXED_4, width_3)
    mixed_5, width_5 = _mixed(_MIXED_5, width_4)
    layers = [
        ("Conv3d_1a_7x7", Unit3D(in_channels, 64, kernel=7, stride=2)),
        ("MaxPool3d_2a_3x3", MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
        ("Conv3d_2b_1x1", Unit3D(64, 64)),
        ("Conv3d_2c_3x3", Unit3D(64, 192, kernel=3)),
        ("MaxPool3d_3a_3x3", MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
        *mixed_3,
        ("MaxPool3d_4a_3x3", MaxPool3dSamePadding(kernel_size=3, stride=2)),
        *mixed_4,
        ("MaxPool3d_5a_2x2", MaxPool3dSamePadding(kernel_size=2, stride=2)),
        *mixed_5,
    ]
    return layers, width_5


class InceptionI3d(nn.Module):
    """pytorch-i3d's InceptionI3d(num_classes, in_channels=in_channels) with its default final_endpoint='Logits'."""

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3):
        super().__init__()
        layers, width = _trunk(in_channels)
        self.endpoints = [name for name, _ in layers]
        for name, layer in layers:
            self.add_module(name, layer)  # top-level names, as the checkpoint's keys have them
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)  # pytorch-i3d passes dropout_keep_prob=0.5 as the drop probability
        self.logits = Unit3D(width, num_classes, batch_norm=False, activation=False, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, T, H, W] -> Mixed_5c's output [N, 1024, ceil(T / 8), ceil(H / 32), ceil(W / 32)]."""
        for name in self.endpoints:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """pytorch-i3d's forward: x [N, C, T, 224, 224] -> logits [N, num_classes, ceil(T / 8) - 1] (T >= 9)."""
        x = self.logits(self.dropout(self.avg_pool(self.features(x))))  # [N, classes, T' - 1, 1, 1]
        return x.squeeze(3).squeeze(3)


def time_averaged_logits(model: InceptionI3d, trunk: torch.Tensor) -> torch.Tensor:
    """Consistent4D's inception3d.py head: Mixed_5c output [N, 1024, T', 7, 7] -> logits averaged over T' [N, 400]."""
    pooled = F.avg_pool3d(trunk, kernel_size=(1, 7, 7), stride=1)  # [N, 1024, T', 1, 1]: each step's own average
    logits = model.logits(model.dropout(pooled))  # [N, 400, T', 1, 1]
    return logits.squeeze(3).squeeze(3).mean(2)


def i3d_features(model: InceptionI3d, videos: torch.Tensor) -> torch.Tensor:
    """The FVD feature of each video: videos [N, 3, T, 224, 224] in [-1, 1] -> [N, 400] float32 on model's device.

    It is what compute_fvd.py's `extract_feature` computes, `feat = model(batch.to(device))` under torch.no_grad(),
    with model its inception3d.py InceptionI3d in eval mode: the Kinetics-400 logits averaged over time.
    """
    if videos.ndim != 5 or videos.shape[1] != 3 or tuple(videos.shape[3:]) != (I3D_SIZE, I3D_SIZE):
        raise ValueError(f"I3D input must be [N, 3, T, {I3D_SIZE}, {I3D_SIZE}], got {list(videos.shape)}")
    if model.training:
        raise ValueError("I3D must be in eval mode: train-mode BatchNorm and dropout change the features")
    device = model.logits.conv3d.weight.device
    with torch.no_grad():
        return time_averaged_logits(model, model.features(videos.to(device)))


def _read_state_dict(path: Path) -> dict:
    """The tensors saved in `path` (DynaPoseError naming it when absent or unreadable)."""
    if not path.is_file():
        raise DynaPoseError(f"I3D weights {path} not found; download i3d_pretrained_400.pt from {I3D_400_DOWNLOAD}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # a plain state dict needs no pickled code
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise DynaPoseError(f"I3D weights {path} could not be read as a torch state dict: {error}") from error
    if not isinstance(state, dict):
        raise DynaPoseError(f"I3D weights {path} hold a {type(state).__name__}, not a state dict")
    return state


def load_i3d_400(path: str | Path, device: str | torch.device = "cpu") -> InceptionI3d:
    """InceptionI3d(400, in_channels=3) with the weights in `path` (i3d_pretrained_400.pt), loaded strictly, in eval."""
    path = Path(path).expanduser()
    state = _read_state_dict(path)  # outside the try: DynaPoseError is a RuntimeError too
    model = InceptionI3d(NUM_CLASSES, in_channels=3)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # missing or unexpected keys, or shape mismatches, all listed by torch
        details = " ".join(str(error).split())
        raise DynaPoseError(f"I3D weights {path} do not match pytorch-i3d's InceptionI3d(400): {details}") from error
    return model.to(device).eval()
