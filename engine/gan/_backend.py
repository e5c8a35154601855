"""The GAN backend: a grid in one forward pass, variations as seeded steps in z, upscales by resampling.

A variation's request carries the cell's picture, not the z that drew it (the bot sends a variation
with a new seed and the cell as `init_image`), so the backend first recovers a z for the picture by
inversion: a few dozen Adam steps on z, from a few seeded starts, to reproduce the picture through the
generator. That works the same for a grid cell, a variation's cell or a picture from elsewhere. The
four new z's are then the recovered one moved by a seeded step whose size follows `strength`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import torch
from PIL import Image

from engine.backend import Capabilities, ProgressCallback
from engine.edits import CANNOT_PAINT
from engine.errors import GenerationError, JobCancelled
from engine.gan.network import Generator, z_map_size
from engine.safety import SafetyChecker, check_images
from engine.types import GenerationRequest, GenerationResult, Mode, Progress

__all__ = ["INVERSION_STARTS", "INVERSION_STEPS", "GanBackend", "z_step"]

INVERSION_STEPS = 40
INVERSION_STARTS = 4
"""Inversion runs this many seeded starting z's side by side (one batch) and keeps the best."""
_INVERSION_LR = 0.08
_PRIOR = 0.05
"""Weight of the pull towards z's with unit variance, so a recovered z stays one the generator knows."""
UPSCALE_FACTOR = 2


def z_step(strength: float) -> float:
    """How far a variation moves z: the new z is √(1-a²)·z + a·ε with a = this (0: the cell, 1: a new z)."""
    return min(1.0, max(0.0, strength))


class GanBackend:
    """Runs one generator (and its text encoder) on one device; one job at a time."""

    def __init__(
        self,
        generator: Generator,
        *,
        name: str,
        capabilities: Capabilities,
        device: str = "cpu",
        safety_checker: SafetyChecker | None = None,
    ) -> None:
        self.name = name
        self._capabilities = capabilities
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self._safety = safety_checker
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def checker(self) -> str | None:
        return self._safety.name if self._safety is not None else None

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> GenerationResult:
        """Run one job: a grid (TEXT), four variations of a cell (VARIATION) or a 2× resample (UPSCALE)."""
        engine = self._capabilities.engine
        if request.mode is Mode.EDIT:
            raise GenerationError(f"{CANNOT_PAINT} (engine: {engine})")
        if request.mode is Mode.IMAGE:
            raise GenerationError(
                f"The {engine} engine cannot start from pictures (image prompts, /blend); "
                "send the prompt as text only, or use a diffusion model."
            )
        if request.negative_prompt.strip():
            raise GenerationError(
                f"The {engine} engine cannot keep things out of a picture (--no, negative weights); "
                "leave them out of the prompt."
            )
        if cancelled.is_set():
            raise JobCancelled("This job was cancelled before it started.")
        started = time.perf_counter()
        with self._lock:
            if request.mode is Mode.UPSCALE:
                return self._upscale(request, on_progress, started)
            with torch.no_grad():
                text = self._text(request)
            extra: dict[str, str] = {"mode": request.mode.value}
            if request.mode is Mode.VARIATION:
                target = _open(request.init_image, "A variation")
                recovered, error = self._invert(target, text[:1], request.seed, cancelled)
                on_progress(Progress(step=1, total=2))
                a = z_step(request.strength)
                steps = torch.stack([self._noise(seed, recovered.shape) for seed in request.seeds])
                z = (1 - a * a) ** 0.5 * recovered + a * steps
                extra["strength"] = f"{request.strength:g}"
                extra["notes"] = (
                    f"z recovered from the cell by inversion ({INVERSION_STEPS} steps, mean squared error "
                    f"{error:.4f} in [-1, 1]), moved by a seeded step of {a:g}"
                )
                total = 2
            else:
                h, w = z_map_size(request.aspect_ratio, self.generator.config)
                z = torch.stack(
                    [self._noise(seed, (self.generator.config.z_channels, h, w)) for seed in request.seeds]
                )
                total = 1
            if cancelled.is_set():
                raise JobCancelled("This job was cancelled before its pictures were drawn.")
            with torch.no_grad():
                pixels = self.generator(z, text.expand(len(z), -1))  # the whole grid in one forward pass
            images = _to_images(pixels)
            on_progress(Progress(step=total, total=total))
            return self._result(request, images, request.seeds, 1, "gan", started, extra)

    # -- steps -------------------------------------------------------------------------------------

    def _text(self, request: GenerationRequest) -> torch.Tensor:
        """One text embedding (1 × text_dim): the prompt's, or the weighted mean of a multi-prompt's parts."""
        parts = request.weighted_prompts or ()
        if not parts:
            return self.generator.encode([request.prompt])
        if any(part.weight <= 0 for part in parts):
            raise GenerationError(
                f"The {self._capabilities.engine} engine cannot weigh a prompt part at zero or below; "
                "give every part of a multi-prompt a positive weight."
            )
        embeddings = self.generator.encode([part.text for part in parts])
        weights = torch.tensor([part.weight for part in parts], device=embeddings.device).unsqueeze(1)
        return (embeddings * weights).sum(0, keepdim=True) / weights.sum()

    def _noise(self, seed: int, shape: Sequence[int]) -> torch.Tensor:
        # Drawn on a CPU generator, so a seed gives the same z on every device.
        noise = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))
        return noise.to(self.device)

    def _invert(
        self, target: Image.Image, text: torch.Tensor, seed: int, cancelled: threading.Event
    ) -> tuple[torch.Tensor, float]:
        """A z (z_channels × h × w) the generator turns into `target` (nearly), and the squared error left."""
        config = self.generator.config
        h, w = z_map_size((target.width, target.height), config)
        size = (w * config.upsampling, h * config.upsampling)
        goal = _to_tensor(target.resize(size, Image.Resampling.LANCZOS)).to(self.device)
        starts = torch.stack(
            [self._noise(seed + 1000 + i, (config.z_channels, h, w)) for i in range(INVERSION_STARTS)]
        )
        z = starts.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=_INVERSION_LR)
        text = text.expand(INVERSION_STARTS, -1)
        with torch.enable_grad():
            for _ in range(INVERSION_STEPS):
                if cancelled.is_set():
                    raise JobCancelled("This variation was cancelled while it studied its cell.")
                errors = ((self.generator(z, text) - goal) ** 2).mean(dim=(1, 2, 3))
                prior = (z.pow(2).mean(dim=(1, 2, 3)) - 1).pow(2)
                optimiser.zero_grad(set_to_none=True)
                (errors + _PRIOR * prior).sum().backward()
                optimiser.step()
        with torch.no_grad():
            errors = ((self.generator(z, text) - goal) ** 2).mean(dim=(1, 2, 3))
        best = int(errors.argmin())
        return z[best].detach(), float(errors[best])

    def _upscale(
        self, request: GenerationRequest, on_progress: ProgressCallback, started: float
    ) -> GenerationResult:
        source = _open(request.init_image, "An upscale")
        size = (source.width * UPSCALE_FACTOR, source.height * UPSCALE_FACTOR)
        if request.max_side is not None and max(size) > request.max_side:
            raise GenerationError(
                f"Upscaling this {source.width}×{source.height} image would make it {size[0]}×{size[1]}, "
                f"larger than the largest side this server makes ({request.max_side} px)."
            )
        big = source.resize(size, Image.Resampling.LANCZOS)
        on_progress(Progress(step=1, total=1))
        extra = {
            "mode": Mode.UPSCALE.value,
            "notes": f"plain {UPSCALE_FACTOR}x Lanczos resampling (a GAN has no pass that adds detail)",
        }
        return self._result(request, [big], (request.seed,), 0, "lanczos", started, extra)

    def _result(
        self,
        request: GenerationRequest,
        images: list[Image.Image],
        seeds: tuple[int, ...],
        steps: int,
        sampler: str,
        started: float,
        extra: dict[str, str],
    ) -> GenerationResult:
        if request.parent:
            extra["parent"] = request.parent
        return GenerationResult(
            images=tuple(images),
            seeds=seeds,
            width=images[0].width,
            height=images[0].height,
            steps=steps,
            cfg=0.0,
            sampler=sampler,
            model=self.name,
            elapsed_s=time.perf_counter() - started,
            extra=extra,
            flagged=check_images(self._safety, images),
            checker=self.checker,
        )

    def close(self) -> None:
        """Drop the generator (and with it any device memory)."""
        self.generator.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _open(path: object, what: str) -> Image.Image:
    if path is None:
        raise GenerationError(f"{what} needs the image it starts from, and the job names none.")
    try:
        with Image.open(path) as opened:  # type: ignore[arg-type]
            return opened.convert("RGB")
    except OSError as exc:
        raise GenerationError(f"{what} could not read the image it starts from ({exc}).") from None


def _to_tensor(image: Image.Image) -> torch.Tensor:
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return torch.from_numpy(pixels).unsqueeze(0)


def _to_images(pixels: torch.Tensor) -> list[Image.Image]:
    array = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(cell) for cell in array]
