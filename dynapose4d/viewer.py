"""A run in the browser: the 4D result as Gaussian splats with a time slider (scripts/view.py).

viser draws the splats with WebGL in the browser, so the server needs no GPU and works over
SSH port forwarding. The scene: the dynamic stage's per-frame Gaussians (dynamic/frames/*.ply),
the static model (static/model.ply), the reference camera showing the driving frame (with the
keypoints and skeleton when toggled on) and the held-out cameras of the ground truth, as frusta.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cameras import REFERENCE_FOVY, REFERENCE_RADIUS, Cameras, orbit_position, reference_camera
from .errors import DynaPoseError
from .export import to_uint8
from .gaussians import GaussianModel
from .render.projection import quat_scale_to_covar

MAX_FPS = 30
INITIAL_DISTANCE = 1.3  # the browser's first view: this many times the reference camera's distance,
INITIAL_ELEVATION, INITIAL_AZIMUTH = 20.0, 35.0  # degrees, from this direction
FRUSTUM_SCALE = 0.15  # world units


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
class RunScene:
    frames: list[Splats]  # the dynamic stage's, one per driving frame; [] before it finished
    static: Splats | None
    frustums: list[Frustum]  # the reference view first
    overlays: dict[str, np.ndarray]  # "plain" | "points" | "skeleton" -> driving frames [T, H, W, 3] uint8
    fps: float


def load_run_scene(run_dir: Path) -> RunScene:
    """What a run directory holds that the viewer shows; a run without any model is refused."""
    from omegaconf import OmegaConf

    from .data.driving import draw_keypoints
    from .data.image import WHITE, composite
    from .run import Run

    config_file = Path(run_dir) / ".hydra" / "config.yaml"
    config = OmegaConf.load(config_file) if config_file.exists() else OmegaConf.create()
    run = Run(config, Path(run_dir), torch.device("cpu"))
    frames = [Splats.of(GaussianModel.load_ply(path).activated())
              for path in sorted((run.stage_dir("dynamic") / "frames").glob("*.ply"))]  # fmt: skip
    static_ply = run.stage_dir("static") / "model.ply"
    static = Splats.of(GaussianModel.load_ply(static_ply).activated()) if static_ply.exists() else None
    if not frames and static is None:
        raise DynaPoseError(f"{run_dir} holds no model yet: neither dynamic/frames/*.ply nor static/model.ply")
    camera = OmegaConf.select(config, "static.camera", default={})
    radius, fovy = camera.get("radius", REFERENCE_RADIUS), camera.get("fovy", REFERENCE_FOVY)
    frustums = [_frustum("reference", reference_camera(1, 1, radius, fovy, camera.get("elevation", 0.0)))]
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
    return RunScene(frames, static, frustums, overlays, float(OmegaConf.select(config, "video.fps", default=8)))


def live_scene(frames: list[Splats], camera: dict, fps: float) -> RunScene:
    """What the live viewer of a training stage shows: its current model and the reference camera."""
    radius, fovy, elevation = camera["radius"], camera["fovy"], camera["elevation"]
    return RunScene(frames, None, [_frustum("reference", reference_camera(1, 1, radius, fovy, elevation))], {}, fps)


def _frustum(name: str, camera: Cameras) -> Frustum:
    K = camera.Ks[0]
    fovy = 2 * float(torch.atan(camera.height / (2 * K[1, 1])))
    return Frustum(name, torch.linalg.inv(camera.viewmats[0]).numpy(), fovy, camera.width / camera.height)


class RunViewer:
    """The scene on a viser server, with a time slider, play/pause, frame rate and toggles."""

    def __init__(self, server, scene: RunScene):
        import viser.transforms as transforms

        self.server, self.scene = server, scene
        server.scene.set_up_direction("+y")
        # The first view: from the front-right and a little above, so the model and the cameras both show.
        distance = INITIAL_DISTANCE * float(np.linalg.norm(scene.frustums[0].camera_to_world[:3, 3]))
        position = orbit_position(INITIAL_ELEVATION, INITIAL_AZIMUTH, distance)
        server.initial_camera.position = tuple(float(x) for x in position)
        server.initial_camera.look_at, server.initial_camera.up = (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)
        server.initial_camera.fov = scene.frustums[0].fovy  # the training cameras' field of view
        self.frames = [
            self._add_splats(f"/frames/{t:03d}", splats, visible=t == 0) for t, splats in enumerate(scene.frames)
        ]
        self.static = self._add_splats("/static", scene.static, visible=not scene.frames) if scene.static else None
        self.frustums = []
        for frustum in scene.frustums:
            pose = transforms.SE3.from_matrix(frustum.camera_to_world)
            self.frustums.append(server.scene.add_camera_frustum(
                f"/cameras/{frustum.name}", fov=frustum.fovy, aspect=frustum.aspect, scale=FRUSTUM_SCALE,
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


def serve(run_dir: Path, host: str = "0.0.0.0", port: int = 8080):
    """A viser server showing the run, its viewer, and a daemon thread playing it; returns (server, viewer)."""
    return serve_scene(load_run_scene(run_dir), host, port)


def serve_scene(scene: RunScene, host: str = "0.0.0.0", port: int = 8080):
    """A viser server showing `scene`, its viewer, and a daemon thread playing it; returns (server, viewer)."""
    import viser

    server = viser.ViserServer(host=host, port=port, verbose=False)
    viewer = RunViewer(server, scene)
    threading.Thread(target=viewer.play_forever, daemon=True).start()
    return server, viewer
