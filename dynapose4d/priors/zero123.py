"""Score Distillation Sampling with Zero-1-to-3 / Stable Zero123 (DreamGaussian's recipe).

The reference image conditions the diffusion model twice: its CLIP embedding (joined with
the relative camera of each novel view) is the UNet's single cross-attention token, and
its VAE latent is concatenated to the noisy latent. In the dynamic stage each driving
frame is the reference of the views rendered at its time (DreamGaussian4D).

Novel-view renders are encoded, noised at one timestep t that anneals linearly from 0.98
to 0.02 of the schedule over the stage (the paper's T_max decay), and the guided noise
residual w(t) (eps_hat - eps) with w(t) = 1 - alpha_bar_t is pushed back into the renders.
Each view's random draws come from its own seed (ViewBatch.noise_seeds).
"""

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from ..cameras import REFERENCE_RADIUS, zero123_camera_vector
from ..data.image import WHITE, composite, resize_square
from ..pretrained import PretrainedModel, resolve_pretrained
from ..rules import Boolean, Number, Pair
from . import PRIORS, Prior, PriorContext, ViewBatch, draw_noise_seeds

if TYPE_CHECKING:  # diffusers is imported when a model is loaded, not when the priors are listed
    from ..pretrained.zero123 import Zero123Components

# <stage>.prior -> where its weights live by default; `<stage>.model` overrides the location.
ZERO123_MODELS = {
    "zero123": PretrainedModel("Zero123-XL", "ashawkey/zero123-xl-diffusers", "static.model", "MIT"),
    "stable_zero123": PretrainedModel(
        "Stable Zero123",
        "ashawkey/stable-zero123-diffusers",
        "static.model",
        "Stability AI Non-Commercial Research Community License (stabilityai/stable-zero123 on Hugging Face)",
    ),
}

# `<stage>.sds`, what this prior reads from its stage's settings (dynamic.sds is ${static.sds} by default)
SDS_SETTINGS = {
    "guidance_scale": Number(),  # classifier-free guidance: 0 is unconditional, below 0 pushes away from the image
    "max_timestep": Pair(Number(above=0, max=1)),  # [start, end] of T_max: decays from start to end, in either order
    "half_precision": Boolean(),
}


@PRIORS.register("stable_zero123")
@PRIORS.register("zero123")
class Zero123Prior(Prior):
    """Novel-view SDS loss for both stages; `stable=True` uses Stable Zero123's camera vector."""

    @classmethod
    def weights(cls, settings: DictConfig, stage: str) -> list[PretrainedModel]:
        weights = replace(ZERO123_MODELS[settings.prior], config_key=f"{stage}.model")
        return [replace(weights, location=str(settings.model)) if settings.model else weights]

    @classmethod
    def build(cls, context: PriorContext) -> "Zero123Prior":
        from ..pretrained.zero123 import load_zero123

        settings, device, camera = context.settings, context.device, context.camera
        (weights,) = cls.weights(settings, context.stage)
        half = settings.sds.half_precision and device.type == "cuda"  # fp16 is slow on CPU, and NaN-prone there
        components = load_zero123(resolve_pretrained(weights), device, torch.float16 if half else torch.float32)
        sds, stable = settings.sds, settings.prior == "stable_zero123"
        return cls(
            components, context.references, sds.guidance_scale, tuple(sds.max_timestep), stable,
            reference_elevation=camera.elevation, reference_radius=camera.radius,
        )  # fmt: skip

    def __init__(
        self,
        components: "Zero123Components",
        references: torch.Tensor,  # [F, H, W, 4] RGBA in [0, 1]: the input image, or one per driving frame
        guidance_scale: float,
        max_timestep: tuple[float, float],  # (start, end) as fractions of the training schedule
        stable: bool,
        reference_elevation: float = 0.0,  # degrees: the input photo's camera (DreamGaussian's `elevation`)
        reference_radius: float = REFERENCE_RADIUS,  # the stage's reference camera distance
    ):
        self.components = components
        self.guidance_scale = guidance_scale
        self.max_timestep = max_timestep
        self.stable = stable
        self.reference_elevation, self.reference_radius = float(reference_elevation), float(reference_radius)
        parameter = next(components.unet.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        # Zero123 was trained on objects over white: the references are put on white.
        images = composite(resize_square(references.float().cpu(), components.image_size), WHITE)  # [F, S, S, 3]
        embedded = [self._embed_reference(image) for image in images]
        self.image_embeddings = torch.cat([embedding for embedding, _ in embedded])  # [F, D]
        self.image_latents = torch.cat([latent for _, latent in embedded])  # [F, 4, h, w]
        self.alphas_cumprod = components.scheduler.alphas_cumprod.to(self.device)  # [T]

    @torch.no_grad()
    def _embed_reference(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP image embedding [1, D] and unscaled VAE latent [1, 4, h, w] of the reference [S, S, 3]."""
        pixels = Image.fromarray((image.numpy() * 255).round().astype(np.uint8))
        clip_input = self.components.feature_extractor(images=pixels, return_tensors="pt").pixel_values
        embedding = self.components.image_encoder(clip_input.to(self.device, self.dtype)).image_embeds  # [1, D]
        # Zero123 concatenates the reference latent without the 0.18215 scaling (as it was trained).
        latent = self.components.vae.encode(self._to_model_input(image[None])).latent_dist.mode()
        return embedding, latent

    def _to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W, 3] in [0, 1] -> [B, 3, S, S] in [-1, 1] at the model's resolution and dtype."""
        images = images.permute(0, 3, 1, 2).to(self.device)
        size = self.components.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, (size, size), mode="bilinear", align_corners=False)
        return (images * 2 - 1).to(self.dtype)

    def timestep(self, step_ratio: float) -> int:
        """The annealed diffusion timestep: T_max decays linearly over the stage, t = T_max for the batch."""
        start, end = self.max_timestep
        fraction = start + (end - start) * min(max(step_ratio, 0.0), 1.0)
        steps = len(self.alphas_cumprod)
        return int(min(max(round(fraction * steps), 1), steps - 1))

    def camera_tokens(self, views: ViewBatch) -> torch.Tensor:
        """The UNet's cross-attention token per view [B, 1, D]: projected [CLIP embedding ; camera vector]."""
        # [B, 4] relative to this stage's reference camera: a novel view at its distance has Δradius 0.
        reference = {"reference_elevation": self.reference_elevation, "reference_radius": self.reference_radius}
        camera = zero123_camera_vector(views.elevations, views.azimuths, views.radius, **reference, stable=self.stable)
        embedding = self.image_embeddings[views.reference_indices()]  # [B, D]
        joined = torch.cat([embedding, camera.to(self.device, self.dtype)], dim=-1)[:, None]  # [B, 1, D + 4]
        return self.components.projection(joined)

    @torch.no_grad()
    def predict_noise(self, noisy: torch.Tensor, t: int, views: ViewBatch) -> torch.Tensor:
        """Classifier-free-guided noise prediction [B, 4, h, w]; one UNet call for both branches."""
        batch = len(noisy)
        tokens = self.camera_tokens(views)  # [B, 1, D]
        image_latents = self.image_latents[views.reference_indices()]  # [B, 4, h, w]
        # The unconditional branch zeroes both conditions (after the projection), as Zero123 was trained.
        conditions = torch.cat([image_latents, torch.zeros_like(image_latents)])  # [2B, 4, h, w]
        unet_input = torch.cat([torch.cat([noisy, noisy]), conditions], dim=1)  # [2B, 8, h, w]
        hidden_states = torch.cat([tokens, torch.zeros_like(tokens)])  # [2B, 1, D]
        timesteps = torch.full((2 * batch,), t, device=self.device)
        noise = self.components.unet(unet_input, timesteps, encoder_hidden_states=hidden_states).sample
        conditional, unconditional = noise.chunk(2)
        return unconditional + self.guidance_scale * (conditional - unconditional)

    def loss(self, colors: torch.Tensor, alphas: torch.Tensor, views: ViewBatch, step_ratio: float) -> torch.Tensor:
        """SDS loss of renders `colors` [B, H, W, 3], each over its view's background (`alphas` is unused).

        The renders go to Zero123 as they are: DreamGaussian renders its static stage's novel
        views over black or white at random and scores them so, which keeps the object from
        growing a white haze that would be free on a white-only background.
        Its gradient with respect to the render latents is w(t) (eps_hat - eps) averaged over the views.
        """
        vae = self.components.vae
        posterior = vae.encode(self._to_model_input(colors)).latent_dist
        posterior_noise, noise = view_noise(views, posterior.mean.shape[1:], self.device)  # [B, 4, h, w] each
        # The posterior's sample (DiagonalGaussianDistribution.sample), drawn from each view's own seed.
        latents = (
            posterior.mean + posterior.std * posterior_noise.to(posterior.mean.dtype)
        ) * vae.config.scaling_factor
        t = self.timestep(step_ratio)
        alpha_bar = self.alphas_cumprod[t]
        noisy = alpha_bar.sqrt() * latents.detach() + (1 - alpha_bar).sqrt() * noise.to(latents.dtype)
        predicted = self.predict_noise(noisy.to(self.dtype), t, views)
        gradient = torch.nan_to_num((1 - alpha_bar) * (predicted.float() - noise))
        target = (latents.float() - gradient).detach()
        # 0.5 |latents - target|^2 has exactly `gradient` as its derivative; divide so the weight is batch-free.
        return 0.5 * F.mse_loss(latents.float(), target, reduction="sum") / len(latents)


def view_noise(views: ViewBatch, shape: torch.Size, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each view's posterior-sampling noise and diffusion noise, [B, *shape] each in fp32, from its own seed.

    Per-view generators make a view's SDS term the same whichever views share its batch, so the
    stages may score the views in chunks (chunks.py) without changing the gradient.
    """
    seeds = views.noise_seeds if views.noise_seeds is not None else draw_noise_seeds(len(views))
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    posterior = torch.stack([torch.randn(shape, generator=generator) for generator in generators])
    diffusion = torch.stack([torch.randn(shape, generator=generator) for generator in generators])
    return posterior.to(device), diffusion.to(device)
