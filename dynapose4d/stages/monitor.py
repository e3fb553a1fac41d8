"""What a person watching a training stage gets besides the progress bar.

After every step: the losses and diagnostics into TensorBoard and losses.csv, images every
`log.images_every` steps, and with `viewer=true` the current model in the live web viewer
every `viewer_every` steps (on `viewer_host`:`viewer_port`; 127.0.0.1, this machine only, by default).
"""

import logging

from ..training_log import TrainingLog

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, stage):
        self.stage, cfg = stage, stage.cfg
        self.record = TrainingLog(stage.run.log_dir(stage.name), stage.step, cfg.log.tensorboard)
        self.images_every, self.viewer_every = cfg.log.images_every, cfg.viewer_every
        self.server = self.viewer = None
        if cfg.viewer:
            from ..viewer import live_scene, serve_scene

            scene = live_scene(stage.live_splats(), cfg.static.camera, cfg.video.fps)
            self.server, self.viewer = serve_scene(scene, cfg.viewer_host, cfg.viewer_port)
            log.info("%s: live viewer at http://localhost:%d", stage.name, self.server.get_port())

    def after_step(self, values: dict[str, float]) -> None:
        step, stage = self.stage.step, self.stage
        self.record.scalars(step, {**{f"loss/{key}": value for key, value in values.items()}, **stage.diagnostics()})
        if self.images_every and (step % self.images_every == 0 or step == 1):
            for tag, image in stage.images().items():
                self.record.image(tag, image, step)
        if self.viewer is not None and step % self.viewer_every == 0:
            self.viewer.replace_frames(stage.live_splats())

    def close(self) -> None:
        self.record.close()
        if self.server is not None:
            self.server.stop()
