"""The diffusers backend: text-to-image grids, variations, upscales, edits, previews, cancel and OOM retry.

One `generate` call is one job. A grid is one batched pipeline call of four images with a list of
four CPU generators seeded `seed … seed+3`, so any single cell can be reproduced alone. Progress
and cancellation go through `callback_on_step_end` and the pipeline's interrupt flag. The safety
check (`engine.safety`) looks at an image prompt's start picture before and at every image after.
An edit (Zoom Out, Pan, Make Square, Vary (Region)) is the inpainting pipeline over the canvas
`engine.edits` lays out, four seeds in one batch, each output composited back onto the original.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from engine.backend import ProgressCallback
from engine.backends import _upscale
from engine.backends._aliases import ModelSet
from engine.backends._conditioning import PromptSides, conditioning_kwargs, prompt_sides
from engine.backends._diffusers import DIFFUSERS
from engine.backends._mapping import (
    guidance_for,
    image_strength,
    img2img_steps,
    plan_for,
    steps_for,
    stop_iteration,
)
from engine.backends._model import LoadedModel, free_device_memory, load_model
from engine.backends._preview import LatentPreviewer
from engine.backends._schedulers import DenoisedTap, sampler_name
from engine.backends._soft_mask import SoftMask
from engine.edits import CANNOT_PAINT, canvas_for, composite, parse_edit
from engine.errors import GenerationError, ImageFlagged, JobCancelled, OutOfMemoryError
from engine.safety import (
    MODEL,
    NONE,
    SafetyChecker,
    check_images,
    detach_pipeline_checker,
    load_safety_checker,
)
from engine.types import (
    UPSCALE_CREATIVE,
    UPSCALE_SUBTLE,
    GenerationRequest,
    GenerationResult,
    Mode,
    Progress,
)

__all__ = ["PREVIEW_EVERY", "DiffusersBackend"]

log = logging.getLogger(__name__)

PREVIEW_EVERY = 2
"""A latent preview rides along with every second progress event (previews cost a small matmul)."""
_BATCHED = (
    "prompt",
    "negative_prompt",
    "prompt_embeds",
    "negative_prompt_embeds",
    "pooled_prompt_embeds",
    "negative_pooled_prompt_embeds",
    "generator",
    "image",
    "mask_image",
)
"""Pipeline arguments with one entry per image; split row by row when retrying after an OOM."""


@dataclass(slots=True)
class _Job:
    """Everything one pipeline run needs: which pipeline, the batched calls, and how to report."""

    pipe: Any
    calls: list[dict[str, Any]]
    cfg: float
    stop: int = 100
    previews: bool = True
    notes: list[str] = field(default_factory=list)
    finish: Callable[[list[Image.Image]], list[Image.Image]] | None = None
    """Turns the pipeline's outputs into the job's images (the upscale blends its tiles, an edit puts
    the original pixels back)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Recipe fields of this job (`GenerationResult.extra`): a `mode` finer than the request's, `strength`."""
    soft_mask: SoftMask | None = None
    """An edit's mask, step by step (its calls hand the callback `SoftMask.TENSORS`)."""


class _StepCallback:
    """`callback_on_step_end`: an edit's soft mask, progress events, previews, `--stop` and cancellation."""

    def __init__(
        self,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
        previewer: LatentPreviewer | None,
        stop: int,
        calls: int,
        tap: DenoisedTap | None = None,
        soft_mask: SoftMask | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._cancelled = cancelled
        self._previewer = previewer
        self._stop = stop
        self._tap = tap
        self._soft_mask = soft_mask
        self._calls = calls
        self.call = 0
        self.iterations = 0
        """Most denoising iterations any call ran (all calls of a job run the same schedule)."""

    def __call__(self, pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if self._soft_mask is not None:
            self._soft_mask(pipe, i, tensors)
        total = stop_iteration(pipe.num_timesteps, self._stop)
        done = i + 1
        self.iterations = max(self.iterations, done)
        preview = None
        if self._previewer is not None and done % PREVIEW_EVERY == 0 and done < total:
            preview = self._previewer(tensors["latents"])
        self._on_progress(Progress(self.call * total + done, self._calls * total, preview))
        if self._cancelled.is_set() or done >= total:
            # The pipeline skips the remaining steps and decodes the latents we hand back.
            pipe._interrupt = True
            if done < pipe.num_timesteps and self._tap is not None and self._tap.latest is not None:
                # `--stop`: the estimate of the finished image (schedulers compute it in float32)
                tensors["latents"] = self._tap.latest.to(tensors["latents"].dtype)
        return tensors


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _split_rows(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    n = len(kwargs["generator"])
    rows = []
    for r in range(n):
        row = dict(kwargs)
        for key in _BATCHED:
            value = kwargs.get(key)
            if value is not None and not isinstance(value, (str, Image.Image)) and len(value) == n:
                row[key] = value[r : r + 1]
        rows.append(row)
    return rows


def _generators(seeds: tuple[int, ...] | list[int]) -> list[Any]:
    import torch

    # CPU generators give the same noise on every device, so a seed means the same picture anywhere.
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


_JOB_NAMES = {
    Mode.VARIATION: "variation",
    Mode.UPSCALE: "upscale",
    Mode.IMAGE: "image prompt",
    Mode.EDIT: "edit",
}
_UPSCALE_NAMES = {UPSCALE_SUBTLE: "upscale (subtle)", UPSCALE_CREATIVE: "upscale (creative)"}


def _image_call(
    pipe: Any,
    sides: PromptSides,
    seeds: tuple[int, ...],
    chaos: int,
    cfg: float,
    image: Image.Image | list[Image.Image],
    strength: float,
    steps: int,
    **more: Any,
) -> dict[str, Any]:
    """One batched image-to-image (or inpainting) call: the prompt for `seeds`, `image` re-noised to
    `strength` out of `steps` (`img2img_steps`), plus `more` arguments for the pipeline."""
    return {
        **conditioning_kwargs(pipe, sides, seeds=seeds, chaos=chaos, guidance=cfg > 1),
        "image": image,
        "strength": strength,
        "num_inference_steps": img2img_steps(steps, strength),
        "guidance_scale": cfg,
        "generator": _generators(seeds),
        **more,
    }


def _open_source(path: Path | None, mode: Mode) -> Image.Image:
    what = _JOB_NAMES.get(mode, mode.value)
    if path is None:
        raise GenerationError(f"This {what} needs the image it starts from, and the job names none.")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise GenerationError(
            f"The image this {what} starts from ({path.name}) can't be read; "
            "it may have been removed from the data folder."
        ) from exc


def _check_max_side(what: str, size: tuple[int, int], max_side: int | None) -> None:
    if max_side is not None and max(size) > max_side:
        raise GenerationError(
            f"{what} would make a {size[0]}×{size[1]} image, larger than the largest side this "
            f"server makes ({max_side} px)."
        )


def _inpainting(model: LoadedModel) -> Any:
    """The model's inpainting pipeline, or `GenerationError` saying this model cannot paint."""
    try:
        return model.inpaint
    except (ValueError, KeyError, TypeError) as exc:  # AutoPipeline knows no inpainting twin for it
        raise GenerationError(f"{CANNOT_PAINT} ({model.model_id}: {exc})") from exc


def _check_start(checker: SafetyChecker | None, source: Image.Image) -> None:
    """Refuse to start from a flagged picture (`ImageFlagged`): nothing is made from it."""
    if any(check_images(checker, [source])):
        raise ImageFlagged()


class DiffusersBackend:
    """A `Backend` running diffusers pipelines; the default model stays loaded, aliases load lazily
    (one model on the device at a time, see `_aliases.ModelSet`)."""

    capabilities = DIFFUSERS
    """Stable Diffusion and SDXL pipelines honour every parameter and all have an inpainting twin
    (`LoadedModel.inpaint`)."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: str = "cpu",
        aliases: Mapping[str, str] | None = None,
        diffusion_upscale: bool = True,
        loader: Callable[[str], LoadedModel] | None = None,
        safety_checker: str = MODEL,
    ) -> None:
        """`safety_checker` is `IMAGINE_SAFETY_CHECKER`: `model`, `none` or `package.module:attribute`
        (`engine.safety`); a custom checker is made once and checks every model's images."""
        self.name = f"diffusers:{model.model_id}"
        self.device = device
        self.diffusion_upscale = diffusion_upscale
        self._safety_setting = safety_checker
        self._shared_checker = (
            None if safety_checker in (MODEL, NONE) else load_safety_checker(safety_checker)
        )
        load = loader or (lambda model_id: load_model(model_id, device=device))
        self._models = ModelSet(
            self._with_checker(model),
            device=device,
            aliases=aliases or {},
            loader=lambda model_id: self._with_checker(load(model_id)),
        )
        self._lock = threading.Lock()

    def _with_checker(self, model: LoadedModel) -> LoadedModel:
        """Give a freshly loaded model the checker the setting names: its own, the shared one, or none."""
        own = detach_pipeline_checker(model.text2img)  # never the pipeline's silent black-out
        model.safety_checker = own if self._safety_setting == MODEL else self._shared_checker
        return model

    @property
    def checker(self) -> str | None:
        """The name of the safety checker the default model's images go through; None = none."""
        checker = self._models.default.safety_checker
        return checker.name if checker is not None else None

    @classmethod
    def from_pipeline(
        cls, pipe: Any, model_id: str, *, tiny: bool = False, **kwargs: Any
    ) -> DiffusersBackend:
        """Wrap an already built text-to-image pipeline (tests, notebooks)."""
        return cls(LoadedModel(pipe, model_id, tiny=tiny), device=str(pipe.device), **kwargs)

    @property
    def model(self) -> LoadedModel:
        """The default model."""
        return self._models.default

    # --- jobs ----------------------------------------------------------------------------

    def _text_job(self, model: LoadedModel, request: GenerationRequest) -> _Job:
        sides = prompt_sides(request)
        plan = plan_for(request, model.family, has_negative=bool(sides.negative))
        seeds = request.seeds
        cond = conditioning_kwargs(
            model.text2img, sides, seeds=seeds, chaos=request.chaos, guidance=plan.cfg > 1
        )
        call = {
            **cond,
            "width": plan.width,
            "height": plan.height,
            "num_inference_steps": plan.steps,
            "guidance_scale": plan.cfg,
            "generator": _generators(seeds),
        }
        return _Job(model.text2img, [call], plan.cfg, request.stop, notes=list(plan.notes))

    def _variation_job(self, model: LoadedModel, request: GenerationRequest) -> _Job:
        source = _open_source(request.init_image, Mode.VARIATION)
        multiple = model.family.size_multiple
        size = (
            max(multiple, source.width // multiple * multiple),
            max(multiple, source.height // multiple * multiple),
        )
        if source.size != size:
            source = source.resize(size, Image.Resampling.LANCZOS)
        sides = prompt_sides(request)
        cfg, note = guidance_for(request, model.family, has_negative=bool(sides.negative))
        pipe = model.img2img
        steps = steps_for(request, model.family)
        call = _image_call(pipe, sides, request.seeds, request.chaos, cfg, source, request.strength, steps)
        return _Job(pipe, [call], cfg, request.stop, notes=[note] if note else [])

    def _image_job(self, model: LoadedModel, request: GenerationRequest) -> _Job:
        """A fresh grid at the requested `--ar` that starts from the member's picture (image-to-image).

        The start image is cropped to the grid's size around its centre (the bot already fitted it
        to the ratio; this only evens out rounding), then re-noised to `image_strength(--iw)`.
        """
        sides = prompt_sides(request)
        plan = plan_for(request, model.family, has_negative=bool(sides.negative))
        source = ImageOps.fit(
            _open_source(request.init_image, Mode.IMAGE), (plan.width, plan.height), Image.Resampling.LANCZOS
        )
        if not request.allow_flagged_input:
            _check_start(model.safety_checker, source)
        strength = image_strength(request.image_weight)
        pipe = model.img2img
        call = _image_call(pipe, sides, request.seeds, request.chaos, plan.cfg, source, strength, plan.steps)
        pictures = len(request.sources)
        how = f"blended from {pictures} pictures" if pictures > 1 else "from the picture"
        notes = [
            *plan.notes,
            f"image prompt: image-to-image {how} at strength {strength:g} for --iw "
            f"{request.image_weight:g} (no image-prompt adapter on this model)",
        ]
        return _Job(pipe, [call], plan.cfg, request.stop, notes=notes)

    def _upscale_job(self, model: LoadedModel, request: GenerationRequest, big: Image.Image) -> _Job:
        """Image-to-image over the 2x resampled cell, in tiles; `request.strength` (Upscale Subtle or
        Creative) or else `UPSCALE_STRENGTH` says how much the pass may change."""
        family = model.family
        sides = prompt_sides(request)
        cfg, note = guidance_for(request, family, has_negative=bool(sides.negative))
        strength = request.strength or _upscale.UPSCALE_STRENGTH
        steps = steps_for(request, family)
        # Tiles of twice the native side: a 2x upscale of a native-size cell is one pass (a tile the
        # model's own size would redraw the whole prompt in each quarter); bigger images go in tiles.
        overlap = family.native_size // 4
        boxes = _upscale.tile_boxes(big.width, big.height, tile=2 * family.native_size, overlap=overlap)
        tiles = [big.crop(box) for box in boxes]
        seeds = [(request.seed + i) % 2**32 for i in range(len(tiles))]
        pipe = model.img2img
        calls = [  # at most a grid's worth of tiles per batched call
            _image_call(pipe, sides, tuple(seeds[i : i + 4]), 0, cfg, tiles[i : i + 4], strength, steps)
            for i in range(0, len(tiles), 4)
        ]
        notes = [note] if note else []
        notes.append(f"diffusion upscale over {len(tiles)} tile(s) at strength {strength:g}")

        def finish(outputs: list[Image.Image]) -> list[Image.Image]:
            return [_upscale.blend_tiles(big.size, boxes, outputs, overlap)]

        extra = {"mode": _UPSCALE_NAMES.get(request.strength, Mode.UPSCALE.value)}
        return _Job(pipe, calls, cfg, previews=False, notes=notes, finish=finish, extra=extra)

    def _edit_job(self, model: LoadedModel, request: GenerationRequest) -> _Job:
        """Four inpaintings of the canvas `request.edit` asks for (`engine.edits`), each composited
        back onto the original so that everything the mask keeps is the source's own pixels."""
        edit = parse_edit(request.edit)
        family = model.family
        source = _open_source(request.init_image, Mode.EDIT)
        canvas = canvas_for(source, edit, multiple=family.size_multiple, max_side=request.max_side)
        pipe = _inpainting(model)
        cell = int(pipe.vae_scale_factor)  # one latent
        soft_mask = SoftMask(canvas.latent_strengths(cell), cell)
        sides = prompt_sides(request)
        cfg, note = guidance_for(request, family, has_negative=bool(sides.negative))
        seeds = request.seeds
        width, height = canvas.size
        # Each image gets its own copy of canvas and mask, so that an OOM retry row by row encodes
        # every image with its own generator, exactly as the batch did.
        call = _image_call(
            pipe,
            sides,
            seeds,
            request.chaos,
            cfg,
            [canvas.image] * len(seeds),
            edit.strength,
            steps_for(request, family),
            mask_image=[soft_mask.first()] * len(seeds),
            width=width,
            height=height,
            callback_on_step_end_tensor_inputs=list(SoftMask.TENSORS),
        )

        def finish(outputs: list[Image.Image]) -> list[Image.Image]:
            return [composite(canvas, painted) for painted in outputs]

        extra = {"mode": edit.label, "strength": f"{edit.strength:g}"}
        notes = [note] if note else []
        return _Job(
            pipe, [call], cfg, request.stop, notes=notes, finish=finish, extra=extra, soft_mask=soft_mask
        )

    # --- running -------------------------------------------------------------------------

    def _call(
        self, job: _Job, calls: list[dict[str, Any]], steps: _StepCallback, cancelled: threading.Event
    ) -> list[Image.Image]:
        images: list[Image.Image] = []
        for index, kwargs in enumerate(calls):
            if cancelled.is_set():
                raise JobCancelled("This job was cancelled.")
            steps.call = index
            try:
                output = job.pipe(**kwargs, callback_on_step_end=steps, output_type="pil")
            except GenerationError:
                raise
            except (RuntimeError, ValueError) as exc:
                if _is_oom(exc):
                    raise
                raise GenerationError(f"The model could not make this image: {exc}") from exc
            images.extend(output.images)
        if cancelled.is_set():
            raise JobCancelled("This job was cancelled.")
        return images

    def _run(
        self,
        model: LoadedModel,
        job: _Job,
        request: GenerationRequest,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> tuple[list[Image.Image], _StepCallback]:
        job.pipe.scheduler = model.schedulers.get(request.sampler)
        previewer = model.previewer if job.previews else None
        calls = job.calls
        tap = DenoisedTap(job.pipe.scheduler) if job.stop < 100 else contextlib.nullcontext()
        with model.seamless(request.tile), tap as denoised:
            for attempt in range(2):
                steps = _StepCallback(
                    on_progress, cancelled, previewer, job.stop, len(calls), denoised, job.soft_mask
                )
                try:
                    return self._call(job, calls, steps, cancelled), steps
                except (RuntimeError, ValueError) as exc:
                    if not _is_oom(exc):
                        raise
                    # Leave the except block first so the traceback's tensors can be freed.
                free_device_memory()
                single = [row for call in calls for row in _split_rows(call)]
                if attempt == 1 or len(single) == len(calls):
                    break
                log.warning(
                    "out of memory with batches of %d; retrying one image at a time",
                    len(calls[0]["generator"]),
                )
                calls = single
        raise OutOfMemoryError(
            "The GPU ran out of memory for this job even one image at a time; "
            "try a smaller --ar, a lower --q, or ask the admin for a smaller model."
        )

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> GenerationResult:
        """Run one job on the device; see the module docstring for how requests map to pipeline calls."""
        if cancelled.is_set():
            raise JobCancelled("This job was cancelled before it started.")
        import torch

        # no_grad around the whole job: prompt embeddings are encoded outside the pipeline call.
        with self._lock, torch.no_grad():
            started = time.perf_counter()
            model = self._models.get(request.model)
            if request.mode is Mode.UPSCALE:
                source = _open_source(request.init_image, Mode.UPSCALE)
                big = _upscale.enlarge(source, multiple=model.family.size_multiple)
                _check_max_side(
                    f"Upscaling this {source.width}×{source.height} image", big.size, request.max_side
                )
                if not self.diffusion_upscale:
                    plain = {"notes": "plain resampling (the diffusion pass is off on this server)"}
                    return self._result(
                        model, request, [big], (request.seed,), 0, 0.0, "lanczos", started, plain
                    )
                job = self._upscale_job(model, request, big)
            elif request.mode is Mode.VARIATION:
                job = self._variation_job(model, request)
            elif request.mode is Mode.IMAGE:
                job = self._image_job(model, request)
            elif request.mode is Mode.EDIT:
                job = self._edit_job(model, request)
            else:
                job = self._text_job(model, request)
            images, steps = self._run(model, job, request, on_progress, cancelled)
            if job.finish is not None:
                images = job.finish(images)
            seeds = request.seeds[: len(images)]  # an upscale's tiles become one image, of the first seed
            order = int(getattr(job.pipe.scheduler, "order", 1))
            ran = math.ceil(steps.iterations / order)
            sampler = sampler_name(job.pipe.scheduler)
            extra = {**job.extra, "notes": "; ".join(job.notes)} if job.notes else job.extra
            return self._result(model, request, images, seeds, ran, job.cfg, sampler, started, extra)

    def _result(
        self,
        model: LoadedModel,
        request: GenerationRequest,
        images: list[Image.Image],
        seeds: tuple[int, ...],
        steps: int,
        cfg: float,
        sampler: str,
        started: float,
        job_extra: Mapping[str, str],
    ) -> GenerationResult:
        extra = {"mode": request.mode.value}
        if request.mode is Mode.VARIATION:
            extra["strength"] = f"{request.strength:g}"
        elif request.mode is Mode.IMAGE:
            extra["strength"] = f"{image_strength(request.image_weight):g}"
        if request.parent:
            extra["parent"] = request.parent
        extra.update(job_extra)
        checker = model.safety_checker
        flagged = check_images(checker, images)  # on the device, so within the job's device time
        return GenerationResult(
            images=tuple(images),
            seeds=seeds,
            width=images[0].width,
            height=images[0].height,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            model=model.model_id,
            elapsed_s=time.perf_counter() - started,
            extra=extra,
            flagged=flagged,
            checker=checker.name if checker is not None else None,
        )

    def close(self) -> None:
        """Drop every loaded pipeline and free the device memory."""
        with self._lock:
            self._models.close()
