"""GaussianModel: the raw parameters of a 3D Gaussian Splatting scene.

Parameters live in one `torch.nn.ParameterDict` (`model.params`) in their raw,
unconstrained form, and `activated()` is the only place that maps them to what the
renderer wants (gsplat's pattern, `examples/simple_trainer.py`):

    means      [N, 3]     world positions                 -> as is
    quats      [N, 4]     wxyz rotation, any norm         -> normalised
    scales     [N, 3]     log standard deviations         -> exp
    opacities  [N]        logits                          -> sigmoid
    sh0        [N, 1, 3]  degree-0 spherical harmonics    -> colour 0.5 + C0 * sh0, >= 0

Every parameter has one Adam of its own (`make_optimizers`), so densification can
grow, split and prune Gaussians by resizing each parameter and its optimizer state.
Other modules may keep per-Gaussian side tensors (leading dimension N) as extra keys
in `params`; densification then resizes them together with the Gaussians.
"""

import os

import numpy as np
import torch

from dynapose4d.errors import DynaPoseError
from dynapose4d.media import atomic_output

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic, 1 / (2 sqrt(pi))
CORE_KEYS = ("means", "quats", "scales", "opacities", "sh0")

# The INRIA 3DGS vertex layout (degree-0 colour only), in the order viewers expect it.
PLY_PROPERTIES = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}  # fmt: skip


class GaussianModel(torch.nn.Module):
    """N 3D Gaussians with degree-0 colour, stored as raw parameters in `self.params`."""

    def __init__(self, params: dict[str, torch.Tensor]):
        super().__init__()
        missing = [key for key in CORE_KEYS if key not in params]
        if missing:
            raise ValueError(f"GaussianModel needs parameters {missing}")
        # Core keys first: gsplat's strategy sizes its state from the first parameter.
        ordered = list(CORE_KEYS) + [key for key in params if key not in CORE_KEYS]
        self.params = torch.nn.ParameterDict({key: torch.nn.Parameter(params[key].detach().clone()) for key in ordered})

    # ----- construction -------------------------------------------------------------

    @classmethod
    def from_sphere(
        cls,
        num_points: int,
        radius: float = 0.5,
        generator: torch.Generator | None = None,
        color: torch.Tensor | None = None,
    ) -> "GaussianModel":
        """Points uniform in a ball, as DreamGaussian starts its static stage.

        Each Gaussian is isotropic with a size equal to the spacing of its neighbours
        (root mean square distance to the 3 nearest, as INRIA's `distCUDA2`), so the
        cloud starts without holes or heavy overlap; opacity 0.1; identity rotation.

        Args:
            num_points: N.
            radius: radius of the ball around the origin.
            generator: for reproducible positions and colours.
            color: [3] or [N, 3] RGB in [0, 1]; uniform random colours if None.
        """
        direction = torch.randn(num_points, 3, generator=generator)  # [N, 3]
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # The cube root makes the density uniform in volume, not in radius.
        distance = radius * torch.rand(num_points, 1, generator=generator) ** (1.0 / 3.0)
        means = direction * distance  # [N, 3]
        if color is None:
            color = torch.rand(num_points, 3, generator=generator)
        colors = torch.as_tensor(color, dtype=torch.float32).expand(num_points, 3)  # [N, 3]
        scales = nearest_neighbor_spacing(means).clamp_min(1e-7)[:, None].repeat(1, 3)
        quats = torch.zeros(num_points, 4)
        quats[:, 0] = 1.0
        opacities = torch.full((num_points,), 0.1)
        return cls.from_tensors(
            {
                "means": means,
                "quats": quats,
                "scales": scales,
                "opacities": opacities,
                "colors": colors,
            }
        )

    @classmethod
    def from_tensors(cls, activated: dict[str, torch.Tensor]) -> "GaussianModel":
        """Inverse of `activated()`: wrap renderer-ready tensors (e.g. ground truth).

        Opacities are clamped away from 0 and 1 so their logits stay finite.
        """
        eps = 1e-6
        colors = activated["colors"].float()  # [N, 3]
        return cls(
            {
                "means": activated["means"].float(),
                "quats": torch.nn.functional.normalize(activated["quats"].float(), dim=-1),
                "scales": torch.log(activated["scales"].float()),
                "opacities": torch.logit(activated["opacities"].float().clamp(eps, 1 - eps)),
                "sh0": ((colors - 0.5) / SH_C0)[:, None, :],
            }
        )

    # ----- what the renderer sees ----------------------------------------------------

    @property
    def num_gaussians(self) -> int:
        return self.params["means"].shape[0]

    def activated(self) -> dict[str, torch.Tensor]:
        """Renderer-ready tensors: the one place activations are applied."""
        p = self.params
        return {
            "means": p["means"],  # [N, 3]
            "quats": torch.nn.functional.normalize(p["quats"], dim=-1),  # [N, 4]
            "scales": torch.exp(p["scales"]),  # [N, 3]
            "opacities": torch.sigmoid(p["opacities"]),  # [N]
            "colors": torch.clamp(0.5 + SH_C0 * p["sh0"][:, 0, :], min=0.0),  # [N, 3]
        }

    def make_optimizers(self, lrs: dict[str, float]) -> dict[str, torch.optim.Adam]:
        """One Adam per parameter name, as gsplat's strategies expect.

        `lrs` must name every trainable parameter and nothing else; freeze a parameter
        with `requires_grad_(False)` before calling. eps is 1e-15 because the gradients
        of small, far Gaussians are tiny and a larger eps would swallow them.
        """
        trainable = {key for key, value in self.params.items() if value.requires_grad}
        if set(lrs) != trainable:
            raise ValueError(f"learning rates given for {sorted(lrs)}, trainable parameters are {sorted(trainable)}")
        return {
            key: torch.optim.Adam([{"params": [self.params[key]], "lr": lr, "name": key}], eps=1e-15)
            for key, lr in lrs.items()
        }

    # ----- checkpoints ---------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load parameters whatever the saved number of Gaussians.

        Keys may be `params.<name>` (from `state_dict()`) or bare `<name>` (from
        `dict(model.params)`). Densification changes N, so the parameters are replaced
        (not copied into) by tensors of the saved shapes. The Parameter objects change:
        build the optimizers after loading, then restore their own state dicts.
        """
        saved = {key.removeprefix("params."): value for key, value in state_dict.items()}
        missing = [key for key in self.params if key not in saved]
        unexpected = [key for key in saved if key not in self.params]
        if strict and (missing or unexpected):
            raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for key, value in saved.items():
            old = self.params.get(key, None)
            device = old.device if old is not None else value.device
            requires_grad = old.requires_grad if old is not None else value.is_floating_point()
            self.params[key] = torch.nn.Parameter(value.detach().clone().to(device), requires_grad=requires_grad)

    # ----- PLY -----------------------------------------------------------------------

    def save_ply(self, path: str | os.PathLike) -> None:
        """Write the INRIA 3DGS PLY (raw values, binary little endian) atomically."""
        p = {key: value.detach().cpu().float() for key, value in self.params.items()}
        n = self.num_gaussians
        columns = torch.cat(
            [
                p["means"],  # x y z
                torch.zeros(n, 3),  # nx ny nz: unused, kept because viewers expect them
                p["sh0"][:, 0, :],  # f_dc_0..2
                p["opacities"][:, None],  # opacity (logit)
                p["scales"],  # scale_0..2 (log)
                p["quats"],  # rot_0..3 (wxyz, unnormalised)
            ],
            dim=1,
        )  # [N, 17]
        records = np.empty(n, dtype=[(name, "<f4") for name in PLY_PROPERTIES])
        for i, name in enumerate(PLY_PROPERTIES):
            records[name] = columns[:, i].numpy()
        header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
        header += [f"property float {name}" for name in PLY_PROPERTIES] + ["end_header"]
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii") + records.tobytes())

    @classmethod
    def load_ply(cls, path: str | os.PathLike) -> "GaussianModel":
        """Read an INRIA-layout PLY; higher-order SH (`f_rest_*`) is ignored."""
        records = _read_ply_vertices(path)
        missing = [name for name in PLY_PROPERTIES[:3] + PLY_PROPERTIES[6:] if name not in records.dtype.names]
        if missing:
            raise DynaPoseError(f"{path}: not a 3D Gaussian Splatting PLY, it lacks {missing}")

        def stack(names):  # [N, len(names)]
            return torch.from_numpy(np.stack([records[name].astype(np.float32) for name in names], axis=1))

        return cls(
            {
                "means": stack(["x", "y", "z"]),
                "quats": stack([f"rot_{i}" for i in range(4)]),
                "scales": stack([f"scale_{i}" for i in range(3)]),
                "opacities": stack(["opacity"])[:, 0],
                "sh0": stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
            }
        )


def nearest_neighbor_spacing(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """sqrt(mean squared distance to the k nearest other points) [N] for points [N, 3].

    Exact brute force, a block of rows at a time so memory stays near 128 MB instead
    of N x N. Squared distances come from |a|^2 + |b|^2 - 2 a.b in one addmm into a
    reused buffer (what `torch.cdist` does inside, minus its sqrt and a fresh
    allocation per block): about 1 s for 16k points on 2 CPU cores, 3x faster than
    cdist. Centring first keeps the cancellation error small.
    """
    n = points.shape[0]
    if n <= k:
        raise ValueError(f"need more than {k} points, got {n}")
    points = points - points.mean(dim=0)  # [N, 3]
    norms = points.square().sum(dim=1)  # [N]
    block = max(1, 2**25 // n)
    buffer = points.new_empty(min(block, n), n)
    spacing = points.new_empty(n)
    for start in range(0, n, block):
        rows = points[start : start + block]  # [B, 3]
        own = torch.arange(rows.shape[0], device=points.device)
        dist2 = buffer[: rows.shape[0]]  # [B, N]
        torch.addmm(norms[None, :], rows, points.T, alpha=-2.0, out=dist2)
        dist2.add_(norms[start : start + block, None])
        dist2[own, start + own] = float("inf")  # a point is not its own neighbour
        nearest = dist2.topk(k, dim=1, largest=False).values.clamp_min(0.0)  # [B, k]
        spacing[start : start + block] = nearest.mean(dim=1).sqrt()
    return spacing


def _read_ply_vertices(path: str | os.PathLike) -> np.ndarray:
    """The vertex element of a binary little-endian PLY as a numpy structured array."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise DynaPoseError(f"{path}: not a PLY file")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise DynaPoseError(f"{path}: only binary little-endian PLY files are supported")
    elements = [words for words in (line.split() for line in lines) if words[:1] == ["element"]]
    if not elements or elements[0][1] != "vertex":
        raise DynaPoseError(f"{path}: the first PLY element must be 'vertex'")
    count, fields, in_vertex = int(elements[0][2]), [], False
    for words in (line.split() for line in lines):
        if words[:1] == ["element"]:
            in_vertex = words[1] == "vertex"  # elements after the vertices are not needed
        elif words[:1] == ["property"] and in_vertex:
            if words[1] not in _PLY_TYPES:
                raise DynaPoseError(f"{path}: unsupported PLY property {' '.join(words)}")
            fields.append((words[2], _PLY_TYPES[words[1]]))
    return np.frombuffer(data, dtype=np.dtype(fields), count=count, offset=end + len(b"end_header\n"))
