"""Grids, cells and files: the 2×2 grid, cropping a cell back out, and encoding with the recipe.

Every image we write carries its generation recipe in the format AUTOMATIC1111 writes (a PNG
text chunk named `parameters`; EXIF UserComment for the lossy fallback), so the tools people
already use (A1111's "PNG Info", ComfyUI, image browsers) read it. Encoding is CPU work, so the
async entry point runs it in worker threads and the event loop keeps serving the queue.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from PIL import Image, PngImagePlugin

from engine.errors import EngineError
from engine.types import GRID_SIZE, GenerationRequest, GenerationResult, Mode

__all__ = [
    "DEFAULT_ATTACHMENT_LIMIT",
    "Attachment",
    "ImageError",
    "SavedImages",
    "crop_cell",
    "encode_png",
    "fit_attachment",
    "format_parameters",
    "make_grid",
    "read_recipe",
    "recipe_text",
    "sampler_label",
    "save_job_images",
    "save_result",
    "write_atomically",
]

DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
"""Discord's attachment limit for servers without boosts (the `IMAGINE_ATTACHMENT_LIMIT_MB` default)."""

PARAMETERS_KEY = "parameters"
"""The PNG text chunk A1111 writes its recipe to."""

T = TypeVar("T")

_GRID_COLUMNS = 2
_PNG_COMPRESS_LEVEL = 1
"""zlib level 1: on smooth 512x512 images about 4x faster than Pillow's default 6, files ~15% larger."""
_LOSSY_QUALITIES = (90, 80, 70, 60, 50, 40)
_MIN_FALLBACK_SIDE = 64
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"  # EXIF UserComment character code for UTF-16, as piexif writes it
_ASCII_PREFIX = b"ASCII\x00\x00\x00"

# Our `--sampler` names as A1111 labels them, so its UI and parsers recognise the recipe.
_A1111_SAMPLERS = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "heun": "Heun",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "lcm": "LCM",
}


class ImageError(EngineError, ValueError):
    """Images that cannot form a grid, a cell that does not exist, or a file that cannot fit."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """Encoded bytes ready to upload, and the file extension their format needs."""

    data: bytes
    extension: str

    def filename(self, stem: str) -> str:
        return f"{stem}.{self.extension}"


@dataclass(frozen=True, slots=True)
class SavedImages:
    """Where one job's images went: the grid (None for a single image), each image, and what to post."""

    grid: Path | None
    images: tuple[Path, ...]
    attachment: Path
    """The file to upload: the grid (or the single image), or its lossy copy when that is over the limit."""


# --- grid -----------------------------------------------------------------------------------


def make_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Paste four equal images edge to edge: 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right."""
    if len(images) != GRID_SIZE:
        raise ImageError(f"A grid takes exactly {GRID_SIZE} images; got {len(images)}.")
    width, height = images[0].size
    for number, image in enumerate(images, start=1):
        if image.size != (width, height):
            raise ImageError(
                f"Grid images must all be the same size; image 1 is {width}x{height} "
                f"but image {number} is {image.width}x{image.height}."
            )
    grid = Image.new("RGB", (width * _GRID_COLUMNS, height * (GRID_SIZE // _GRID_COLUMNS)))
    for index, image in enumerate(images):
        row, column = divmod(index, _GRID_COLUMNS)
        grid.paste(image.convert("RGB"), (column * width, row * height))
    return grid


def crop_cell(grid: Image.Image, cell: int, cell_size: tuple[int, int] | None = None) -> Image.Image:
    """Cut cell `cell` (1-4, numbered like the U/V buttons) back out of a grid, pixel for pixel."""
    if not 1 <= cell <= GRID_SIZE:
        raise ImageError(f"Grid cells are numbered 1 to {GRID_SIZE}; got {cell}.")
    rows = GRID_SIZE // _GRID_COLUMNS
    if grid.width % _GRID_COLUMNS or grid.height % rows:
        raise ImageError(
            f"A {grid.width}x{grid.height} image is not a 2×2 grid of equal cells (a side is odd)."
        )
    width, height = grid.width // _GRID_COLUMNS, grid.height // rows
    if cell_size is not None and cell_size != (width, height):
        raise ImageError(
            f"This grid's cells are {width}x{height}, not the {cell_size[0]}x{cell_size[1]} expected."
        )
    row, column = divmod(cell - 1, _GRID_COLUMNS)
    left, top = column * width, row * height
    return grid.crop((left, top, left + width, top + height))


# --- recipe ---------------------------------------------------------------------------------


def sampler_label(name: str) -> str:
    """The A1111 label for one of our sampler names (`euler_a` → `Euler a`); unknown names pass through."""
    return _A1111_SAMPLERS.get(name, name)


def _quote(value: object) -> str:
    # A1111 quotes a value as JSON when a comma, colon or newline would break its `key: value, ...` line.
    text = str(value)
    if any(char in text for char in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def _number(value: float) -> str:
    return f"{value:g}"


def format_parameters(
    prompt: str,
    negative_prompt: str = "",
    *,
    steps: int,
    sampler: str,
    cfg: float,
    seed: int,
    width: int,
    height: int,
    model: str,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The A1111 recipe text: the prompt, `Negative prompt: ...` if any, then `Steps: 20, Sampler: ...`."""
    fields: dict[str, object] = {
        "Steps": steps,
        "Sampler": sampler_label(sampler),
        "CFG scale": _number(cfg),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model": model,
    }
    fields.update(extra or {})
    settings_line = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items())
    lines = [prompt.strip()]
    if negative_prompt.strip():
        lines.append(f"Negative prompt: {negative_prompt.strip()}")
    lines.append(settings_line)
    return "\n".join(lines)


def recipe_text(request: GenerationRequest, result: GenerationResult, index: int | None = None) -> str:
    """The recipe for image `index` (0-based) of a result, or for its grid when `index` is None."""
    if index is not None and not 0 <= index < len(result.seeds):
        raise ImageError(f"This result has {len(result.seeds)} images; there is no image {index + 1}.")
    seed = result.seeds[0 if index is None else index]
    extra: dict[str, object] = {}
    if request.mode is Mode.VARIATION:
        extra["Denoising strength"] = _number(request.strength)
    elif request.mode is Mode.IMAGE:
        # Each picture by its SHA-256 (of the file as fetched), so the recipe names its sources exactly.
        extra["Image prompts"] = " ".join(request.sources)
        extra["Image weight"] = _number(request.image_weight)
    if request.tile:
        extra["Tiling"] = "True"
    extra.update(result.extra)
    if any(result.flagged):  # posted anyway (an age-restricted channel allowed it): the file says so
        flagged = [n for n, flag in enumerate(result.flagged, start=1) if flag]
        if index is None:
            extra["Flagged"] = f"image {', '.join(map(str, flagged))} by {result.checker}"
        elif index + 1 in flagged:
            extra["Flagged"] = f"by {result.checker}"
    return format_parameters(
        request.prompt,
        request.negative_prompt,
        steps=result.steps,
        sampler=result.sampler,
        cfg=result.cfg,
        seed=seed,
        width=result.width,
        height=result.height,
        model=result.model,
        extra=extra,
    )


def _decode_user_comment(raw: object) -> str | None:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        return None
    if raw.startswith(_UNICODE_PREFIX):
        return raw[len(_UNICODE_PREFIX) :].decode("utf-16-be", errors="replace")
    if raw.startswith(_ASCII_PREFIX):
        return raw[len(_ASCII_PREFIX) :].decode("ascii", errors="replace")
    return raw.rstrip(b"\x00").decode("utf-8", errors="replace")


def read_recipe(source: Path | bytes) -> str | None:
    """The recipe stored in an image file (PNG `parameters` chunk or EXIF UserComment), or None."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        text = image.info.get(PARAMETERS_KEY)
        if isinstance(text, str):
            return text
        comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        return _decode_user_comment(comment)


# --- encoding -------------------------------------------------------------------------------


def encode_png(image: Image.Image, recipe: str) -> bytes:
    """Encode as PNG with the recipe in a `parameters` text chunk; same input, same bytes."""
    info = PngImagePlugin.PngInfo()
    # Pillow writes a tEXt chunk, or iTXt when the recipe is not Latin-1 (emoji, CJK prompts).
    info.add_text(PARAMETERS_KEY, recipe)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _recipe_exif(recipe: str) -> Image.Exif:
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE_PREFIX + recipe.encode("utf-16-be")
    return exif


def _encode_lossy(image: Image.Image, recipe: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="WEBP", quality=quality, method=4, exif=_recipe_exif(recipe))
    return buffer.getvalue()


def fit_attachment(
    image: Image.Image, recipe: str, limit_bytes: int = DEFAULT_ATTACHMENT_LIMIT
) -> Attachment:
    """PNG if it fits under `limit_bytes`, else WebP at falling quality (then smaller) until it does."""
    png = encode_png(image, recipe)
    if len(png) <= limit_bytes:
        return Attachment(png, "png")
    candidate = image
    while min(candidate.size) >= _MIN_FALLBACK_SIDE:
        for quality in _LOSSY_QUALITIES:
            data = _encode_lossy(candidate, recipe, quality)
            if len(data) <= limit_bytes:
                return Attachment(data, "webp")
        # Even the lowest quality is too big: shrink, since a smaller picture beats none at all.
        candidate = candidate.resize(
            (candidate.width * 3 // 4, candidate.height * 3 // 4), Image.Resampling.LANCZOS
        )
    raise ImageError(
        f"A {image.width}x{image.height} image does not fit in {limit_bytes} bytes even as a small WebP; "
        "raise IMAGINE_ATTACHMENT_LIMIT_MB."
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _save_png(path: Path, image: Image.Image, recipe: str) -> Path:
    write_atomically(path, encode_png(image, recipe))
    return path


def _save_attachment(
    directory: Path, stem: str, image: Image.Image, recipe: str, limit_bytes: int | None
) -> tuple[Path, Path]:
    """Write the PNG; when it is over the limit also write the lossy copy to post. Returns (png, post)."""
    png_path = directory / f"{stem}.png"
    png = encode_png(image, recipe)
    write_atomically(png_path, png)
    if limit_bytes is None or len(png) <= limit_bytes:
        return png_path, png_path
    attachment = fit_attachment(image, recipe, limit_bytes)
    post_path = directory / attachment.filename(stem)
    write_atomically(post_path, attachment.data)
    return png_path, post_path


def _default_encoder() -> Executor:
    global _encoder
    if _encoder is None:
        # One core stays free for the event loop and the thread feeding the GPU: with every core
        # encoding, generation slowed by ~7% in bench/encode_stall.py on 2 cores; with one free, by ~2%.
        workers = max(1, (os.cpu_count() or 2) - 1)
        _encoder = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagine-encode")
    return _encoder


_encoder: ThreadPoolExecutor | None = None


async def save_job_images(
    result: GenerationResult,
    request: GenerationRequest,
    directory: Path,
    stem: str,
    *,
    attachment_limit_bytes: int | None = DEFAULT_ATTACHMENT_LIMIT,
    executor: Executor | None = None,
) -> SavedImages:
    """Write a job's grid as `<stem>.png` and its images as `<stem>-1.png`…, each with its own recipe.

    A single image (an upscale) is written as `<stem>.png` alone. Encoding runs on `executor`
    (default: a shared pool of one thread fewer than the CPU has cores), never on the event loop.
    """
    if not result.images:
        raise ImageError("The result has no images to save.")
    if len(result.seeds) < len(result.images):
        raise ImageError(f"The result has {len(result.images)} images but only {len(result.seeds)} seeds.")
    loop = asyncio.get_running_loop()
    pool = executor or _default_encoder()

    def run(call: Callable[[], T]) -> asyncio.Future[T]:
        return loop.run_in_executor(pool, call)

    await run(partial(directory.mkdir, parents=True, exist_ok=True))
    limit = attachment_limit_bytes
    images = result.images
    if len(images) == 1:
        recipe = recipe_text(request, result, 0)
        path, post = await run(partial(_save_attachment, directory, stem, images[0], recipe, limit))
        return SavedImages(grid=None, images=(path,), attachment=post)

    grid_job: asyncio.Future[tuple[Path, Path]] | None = None
    if len(images) == GRID_SIZE:
        # Queued first, so the file a user is waiting for lands first when the pool is busy.
        grid_recipe = recipe_text(request, result)
        grid_job = run(lambda: _save_attachment(directory, stem, make_grid(images), grid_recipe, limit))
    cells = [
        run(partial(_save_png, directory / f"{stem}-{n + 1}.png", image, recipe_text(request, result, n)))
        for n, image in enumerate(images)
    ]
    try:
        cell_paths = tuple(await asyncio.gather(*cells))
    except BaseException:
        if grid_job is not None:
            grid_job.cancel()  # its outcome no longer matters; cancelling keeps it from being reported
        raise
    if grid_job is None:
        return SavedImages(grid=None, images=cell_paths, attachment=cell_paths[0])
    grid_path, post_path = await grid_job
    return SavedImages(grid=grid_path, images=cell_paths, attachment=post_path)


save_result = save_job_images
"""The name `docs/interfaces` announced; the same function."""
