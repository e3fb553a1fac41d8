"""A run in the browser: the 4D result as Gaussian splats with a time slider (scripts/view.py).

viser draws the splats with WebGL in the browser, so the server needs no GPU and works over
SSH port forwarding. The scene: the dynamic stage's per-frame Gaussians (dynamic/frames/*.ply),
the static model (static/model.ply), the reference camera showing the driving frame (with the
keypoints and skeleton when toggled on) and the held-out cameras of the ground truth, as frusta.
The browser opens at the reference view, so its first picture is the input image's.

The server listens on 127.0.0.1 unless told otherwise, as TensorBoard and Jupyter do: on a
shared machine anyone who reaches the port could open the run.
"""

import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cameras import REFERENCE_FOVY, REFERENCE_RADIUS, Cameras, reference_camera
from .errors import DynaPoseError
from .gaussians import GaussianModel
from .media import to_uint8
from .render.projection import quat_scale_to_covar

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # only this machine: others forward the port over SSH
MAX_FPS = 30
FRUSTUM_DEPTH = 0.08  # a frustum's depth, times the reference camera's distance: small beside the object
# The browser's near plane, times that distance: just past the reference frustum, whose apex is
# the browser's first eye, so its lines and image of the driving frame do not cover the object there.
NEAR = 1.1 * FRUSTUM_DEPTH


@dataclass
class Splats:
    """One set of Gaussians as viser takes them."""

    centers: np.ndarray  # [N, 3]
    covariances: np.ndarray  # [N, 3, 3]
    rgbs: np.ndarray  # [N, 3] in [0, 1]
    opacities: np.ndarray  # [N, 1]

    @classmethod
    def of(cls, gaussians: dict[str, torch.Tensor]) -> "Splats":
        """From activated Gaussians (GaussianModel.activated())."""
        g = {key: value.detach().float().cpu() for key, value in gaussians.items()}
        return cls(
            g["means"].numpy(),
            quat_scale_to_covar(g["quats"], g["scales"]).numpy(),
            g["colors"].clamp(0, 1).numpy(),
            g["opacities"].reshape(-1, 1).numpy(),
        )


@dataclass
class Frustum:
    name: str
    camera_to_world: np.ndarray  # [4, 4], OpenCV axes (+z forward, +y down), as viser's frusta
    fovy: float  # radians
    aspect: float


@dataclass
class View:
    """A browser camera in world coordinates, as viser's initial camera takes it."""

    position: np.ndarray  # [3]
    look_at: np.ndarray  # [3], also the point the browser orbits about
    up: np.ndarray  # [3]
    fovy: float  # radians

    @classmethod
    def of(cls, camera: Cameras) -> "View":
        """The view of an orbit camera (cameras.py): it looks at the origin, with world +y up in its image.

        The origin rather than the Gaussians' bounding-box centre: the reference image shows the object
        as seen looking at the origin (the input is recentred there), and a few floaters would move a box.
        """
        position = camera.positions[0].double().numpy()
        return cls(position, np.zeros(3), np.array([0.0, 1.0, 0.0]), _fovy(camera))

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.position - self.look_at))


@dataclass
class RunScene:
    frames: list[Splats]  # the dynamic stage's, one per driving frame; [] before it finished
    static: Splats | None
    view: View  # the reference camera's: where the browser starts
    frustums: list[Frustum]  # the reference view first
    overlays: dict[str, np.ndarray]  # "plain" | "points" | "skeleton" -> driving frames [T, H, W, 3] uint8
    fps: float


def load_run_scene(run_dir: Path) -> RunScene:
    """What a run directory holds that the viewer shows; a run without any model is refused."""
    from omegaconf import OmegaConf

    from .data.driving import draw_keypoints
    from .data.image import WHITE, composite
    from .run import Run
    from .run_dir import recorded_config

    config = recorded_config(Path(run_dir)) or OmegaConf.create()
    run = Run(config, Path(run_dir), torch.device("cpu"))
    frames = [Splats.of(GaussianModel.load_ply(path).activated())
              for path in sorted((run.stage_dir("dynamic") / "frames").glob("*.ply"))]  # fmt: skip
    static_ply = run.stage_dir("static") / "model.ply"
    static = Splats.of(GaussianModel.load_ply(static_ply).activated()) if static_ply.exists() else None
    if not frames and static is None:
        raise DynaPoseError(f"{run_dir} holds no model yet: neither dynamic/frames/*.ply nor static/model.ply")
    reference = _reference_camera(OmegaConf.select(config, "static.camera", default={}))
    frustums = [_frustum("reference", reference)]
    if run.ground_truth is not None:  # its held-out cameras
        cameras = run.ground_truth.eval_cameras()
        frustums += [_frustum(f"heldout_{index}", cameras[index]) for index in range(len(cameras))]
    overlays = {}
    if (run.stage_dir("video") / "frames").is_dir():
        driving = composite(run.driving_frames(), WHITE)  # [T, H, W, 3]
        overlays["plain"] = to_uint8(driving)
        if (run.stage_dir("keypoints") / "keypoints.json").exists():
            support, keypoints, visibility = run.keypoints()
            overlays["points"] = to_uint8(draw_keypoints(driving, keypoints, [], visibility))
            overlays["skeleton"] = to_uint8(draw_keypoints(driving, keypoints, support.skeleton, visibility))
    fps = float(OmegaConf.select(config, "video.fps", default=8))
    return RunScene(frames, static, View.of(reference), frustums, overlays, fps)


def live_scene(frames: list[Splats], camera: dict, fps: float) -> RunScene:
    """What the live viewer of a training stage shows: its current model and the reference camera."""
    reference = _reference_camera(camera)
    return RunScene(frames, None, View.of(reference), [_frustum("reference", reference)], {}, fps)


def _reference_camera(camera) -> Cameras:
    """The reference view of a `static.camera` config, square as the input image; a missing key is the default."""
    radius, fovy = camera.get("radius", REFERENCE_RADIUS), camera.get("fovy", REFERENCE_FOVY)
    return reference_camera(1, 1, radius, fovy, camera.get("elevation", 0.0))


def _frustum(name: str, camera: Cameras) -> Frustum:
    return Frustum(name, torch.linalg.inv(camera.viewmats[0]).numpy(), _fovy(camera), camera.width / camera.height)


def _fovy(camera: Cameras) -> float:
    """The vertical field of view of a batch's first camera, in radians (viser's `fov`)."""
    return 2 * float(torch.atan(camera.height / (2 * camera.Ks[0, 1, 1])))


class RunViewer:
    """The scene on a viser server, with a time slider, play/pause, frame rate and toggles."""

    def __init__(self, server, scene: RunScene):
        import viser.transforms as transforms

        self.server, self.scene = server, scene
        server.scene.set_up_direction("+y")
        self._start_at(scene.view)
        self.frames = [
            self._add_splats(f"/frames/{t:03d}", splats, visible=t == 0) for t, splats in enumerate(scene.frames)
        ]
        self.static = self._add_splats("/static", scene.static, visible=not scene.frames) if scene.static else None
        self.frustums = []
        for frustum in scene.frustums:
            pose = transforms.SE3.from_matrix(frustum.camera_to_world)
            self.frustums.append(server.scene.add_camera_frustum(
                f"/cameras/{frustum.name}", fov=frustum.fovy, aspect=frustum.aspect,
                scale=viser_frustum_scale(FRUSTUM_DEPTH * scene.view.distance, frustum.fovy, frustum.aspect),
                wxyz=pose.rotation().wxyz, position=pose.translation(),
                color=(200, 60, 40) if frustum.name == "reference" else (60, 60, 200),
            ))  # fmt: skip
        count = max(len(scene.frames), 1)
        gui = server.gui
        self.time = gui.add_slider("time (frame)", min=0, max=count - 1, step=1, initial_value=0, disabled=count == 1)
        self.playing = gui.add_checkbox("play", initial_value=False, disabled=count == 1)
        self.fps = gui.add_slider("frame rate", min=1, max=MAX_FPS, step=1, initial_value=min(scene.fps, MAX_FPS))
        self.show_static = gui.add_checkbox("static model", initial_value=not scene.frames, disabled=not scene.static)
        self.show_cameras = gui.add_checkbox("cameras", initial_value=True)
        self.show_keypoints = gui.add_checkbox("keypoints", initial_value=True, disabled="points" not in scene.overlays)
        self.show_skeleton = gui.add_checkbox("skeleton", initial_value=True, disabled="skeleton" not in scene.overlays)
        for handle in (self.time, self.show_static, self.show_cameras, self.show_keypoints, self.show_skeleton):
            handle.on_update(lambda _: self.refresh())
        self.refresh()

    def _start_at(self, view: View) -> None:
        """Where every browser that connects (and its Reset View) starts; viser keeps it for later clients."""
        initial = self.server.initial_camera
        initial.position, initial.look_at, initial.up = view.position, view.look_at, view.up
        initial.fov = view.fovy
        initial.near = NEAR * view.distance

    def _add_splats(self, name: str, splats: Splats, visible: bool):
        return self.server.scene.add_gaussian_splats(
            name, centers=splats.centers, covariances=splats.covariances, rgbs=splats.rgbs,
            opacities=splats.opacities, visible=visible,
        )  # fmt: skip

    def replace_frames(self, frames: list[Splats]) -> None:
        """New Gaussians for every frame (as many as before), e.g. the model of a later training step."""
        with self.server.atomic():  # a browser never shows half the frames updated
            self.frames = [self._add_splats(handle.name, splats, handle.visible)
                           for handle, splats in zip(self.frames, frames)]  # fmt: skip

    def refresh(self) -> None:
        """Show what the controls ask for: the frame at the slider's time, the toggled extras."""
        t = int(self.time.value)
        for index, handle in enumerate(self.frames):
            handle.visible = index == t
        if self.static is not None:
            self.static.visible = bool(self.show_static.value)
        for handle in self.frustums:
            handle.visible = bool(self.show_cameras.value)
        overlay = self._overlay()
        if overlay is not None and self.frustums:
            self.frustums[0].image = overlay[min(t, len(overlay) - 1)]  # the reference camera shows frame t

    def _overlay(self) -> np.ndarray | None:
        overlays = self.scene.overlays
        if self.show_keypoints.value and "points" in overlays:
            return overlays["skeleton" if self.show_skeleton.value else "points"]
        return overlays.get("plain")

    def play_forever(self) -> None:
        """Advance the time slider at the chosen frame rate while `play` is on (blocks)."""
        while True:
            if self.playing.value and len(self.frames) > 1:
                self.time.value = (int(self.time.value) + 1) % len(self.frames)
            time.sleep(1.0 / float(self.fps.value))


def serve(run_dir: Path, host: str = DEFAULT_HOST, port: int = 8080):
    """A viser server showing the run, its viewer, and a daemon thread playing it; returns (server, viewer)."""
    return serve_scene(load_run_scene(run_dir), host, port)


def serve_scene(scene: RunScene, host: str = DEFAULT_HOST, port: int = 8080):
    """A viser server showing `scene`, its viewer, and a daemon thread playing it; returns (server, viewer).

    A host other machines can reach (0.0.0.0: every interface) is served too, with one warning line.
    """
    import viser

    server = viser.ViserServer(host=host, port=port, verbose=False)
    if not is_loopback(host):
        log.warning(
            "the viewer listens on %s: anyone who can reach this machine on port %d can open the run",
            host, server.get_port(),
        )  # fmt: skip
    viewer = RunViewer(server, scene)
    threading.Thread(target=viewer.play_forever, daemon=True).start()
    return server, viewer


def viser_frustum_scale(depth: float, fovy: float, aspect: float) -> float:
    """viser's `scale` of a frustum `depth` deep: viser keeps a frustum's volume, not its depth, at `scale`.

    Its client (client/src/CameraFrustumVariants.tsx) divides the frustum's half-extents
    tan(fovy / 2) * aspect, tan(fovy / 2) and depth 1 by the cube root of their product / 3.
    """
    half_height = math.tan(fovy / 2)
    return depth * (half_height * half_height * aspect / 3) ** (1 / 3)


def is_loopback(host: str) -> bool:
    """Whether only this machine can connect to `host`: localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name: it may resolve to an address others reach
        return False
