"""Grids, cells and files: the 2×2 grid, cropping a cell back out, and encoding with the recipe.

Every image we write carries its generation recipe in the format AUTOMATIC1111 writes (a PNG
text chunk named `parameters`; EXIF UserComment in the WebP or JPEG posted to Discord), so the tools
people already use (A1111's "PNG Info", ComfyUI, sd-parsers, image browsers) read it. Encoding is CPU
work, so the async entry points run it in worker threads and the event loop keeps serving the queue:
the file to post first, on a thread of its own, then the PNGs kept on disk.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from PIL import Image, PngImagePlugin

from engine.errors import EngineError
from engine.types import GRID_SIZE, GenerationRequest, GenerationResult, Mode

__all__ = [
    "DEFAULT_ATTACHMENT_LIMIT",
    "POSTED_GRID_MAX_SIDE",
    "Attachment",
    "ImageError",
    "ImageFormat",
    "JobImages",
    "SavedImages",
    "crop_cell",
    "encode_png",
    "fit_attachment",
    "format_parameters",
    "make_grid",
    "prepare_job_images",
    "read_recipe",
    "recipe_text",
    "sampler_label",
    "save_job_images",
    "save_result",
    "write_atomically",
]

DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
"""Discord's attachment limit for servers without boosts (the `IMAGINE_ATTACHMENT_LIMIT_MB` default)."""

POSTED_GRID_MAX_SIDE = 2048
"""A grid posted in a compact format (WebP, JPEG) is at most this wide and tall: a larger one (four
1536×864 cells of a hosted engine make 3072×1728) is posted at its size divided by the smallest whole
number that fits, a box filter taking milliseconds, where encoding it whole took ~0.2 s on this CPU.
Discord shows it smaller still; the full grid and cells stay on disk as PNG, and U gives a full cell."""

PARAMETERS_KEY = "parameters"
"""The PNG text chunk A1111 writes its recipe to."""

_GRID_COLUMNS = 2
_PNG_COMPRESS_LEVEL = 1
"""zlib level 1: on smooth 512x512 images about 4x faster than Pillow's default 6, files ~15% larger."""
_LOSSY_QUALITIES = (90, 80, 70, 60, 50, 40)
_WEBP_METHOD = 0
"""libwebp's fastest method: on a 1024² grid of diffusion-like content ~3× faster than method 4 for
~10% more bytes (bench/post_gpu_latency.py); the attachment is on the critical path."""
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


class ImageFormat(StrEnum):
    """The format of the file posted to Discord (`IMAGINE_DISCORD_IMAGE_FORMAT`); the files on disk
    are PNG whatever it is."""

    WEBP = "webp"
    JPEG = "jpeg"
    PNG = "png"

    @property
    def extension(self) -> str:
        return "jpg" if self is ImageFormat.JPEG else self.value


_FIRST_QUALITY = {ImageFormat.WEBP: 90, ImageFormat.JPEG: 92}
"""Where lossy encoding starts: no visible loss on diffusion output, ~8× fewer bytes than PNG."""


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
    """The file to upload: the grid (or the single image) in the Discord format, or the PNG itself."""
    upload: Attachment | None = None
    """The attachment's bytes still in memory (post these rather than read the file back), or None."""
    written: Awaitable[object] | None = None
    """Completes once every file above is on disk; None when they already are."""


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
    # As A1111 writes it for WebP and JPEG (piexif's "unicode" UserComment): what its PNG Info tab,
    # sd-parsers and image browsers read back.
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE_PREFIX + recipe.encode("utf-16-be")
    return exif


def _encode_lossy(image: Image.Image, recipe: str, image_format: ImageFormat, quality: int) -> bytes:
    buffer = io.BytesIO()
    rgb = image.convert("RGB")
    if image_format is ImageFormat.JPEG:
        rgb.save(buffer, format="JPEG", quality=quality, exif=_recipe_exif(recipe))
    else:
        rgb.save(buffer, format="WEBP", quality=quality, method=_WEBP_METHOD, exif=_recipe_exif(recipe))
    return buffer.getvalue()


def fit_attachment(
    image: Image.Image,
    recipe: str,
    limit_bytes: int = DEFAULT_ATTACHMENT_LIMIT,
    image_format: ImageFormat = ImageFormat.PNG,
    *,
    png: bytes | None = None,
) -> Attachment:
    """The file to post, with the recipe in it: `image_format` at its usual quality; over
    `limit_bytes`, lossy (WebP for a PNG) at falling quality, then smaller, until it fits.

    `png`: the image already encoded by `encode_png`, so a PNG attachment is not encoded twice.
    """
    if image_format is ImageFormat.PNG:
        data = png if png is not None else encode_png(image, recipe)
        if len(data) <= limit_bytes:
            return Attachment(data, "png")
        lossy, first = ImageFormat.WEBP, None
    else:
        lossy, first = image_format, _FIRST_QUALITY[image_format]
        data = _encode_lossy(image, recipe, lossy, first)
        if len(data) <= limit_bytes:
            return Attachment(data, lossy.extension)
    candidate = image
    while min(candidate.size) >= _MIN_FALLBACK_SIDE:
        for quality in _LOSSY_QUALITIES:
            if candidate is image and first is not None and quality >= first:
                continue  # tried already
            data = _encode_lossy(candidate, recipe, lossy, quality)
            if len(data) <= limit_bytes:
                return Attachment(data, lossy.extension)
        # Even the lowest quality is too big: shrink, since a smaller picture beats none at all.
        candidate = candidate.resize(
            (candidate.width * 3 // 4, candidate.height * 3 // 4), Image.Resampling.LANCZOS
        )
    raise ImageError(
        f"A {image.width}x{image.height} image does not fit in {limit_bytes} bytes even as a small "
        f"{lossy.value.upper()}; raise IMAGINE_ATTACHMENT_LIMIT_MB."
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _save_png(path: Path, image: Image.Image, recipe: str, png: bytes | None = None) -> Path:
    write_atomically(path, png if png is not None else encode_png(image, recipe))
    return path


def _pool(workers: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)


def _default_encoder() -> Executor:
    """The pool that writes files: one thread fewer than the CPU has cores."""
    global _encoder
    if _encoder is None:
        # One core stays free for the event loop and the thread feeding the GPU: with every core
        # encoding, generation slowed by ~7% in bench/encode_stall.py on 2 cores; with one free, by ~2%.
        _encoder = _pool(max(1, (os.cpu_count() or 2) - 1), "imagine-encode")
    return _encoder


def _default_poster() -> Executor:
    """One thread for what a member is waiting for (the attachment to post), so it never queues behind
    the files of the jobs before it, which the writer pool may still be busy with."""
    global _poster
    if _poster is None:
        _poster = _pool(1, "imagine-post")
    return _poster


_encoder: ThreadPoolExecutor | None = None
_poster: ThreadPoolExecutor | None = None


@dataclass(frozen=True, slots=True)
class _File:
    path: Path
    image: Image.Image
    recipe: str
    png: bytes | None = None
    """Already encoded (a PNG attachment is the file itself)."""


class JobImages:
    """One job's images in two steps: the attachment, encoded first, to post at once (`saved.upload`),
    then every file written by `write()` — the attachment, each image as PNG with its recipe, the grid
    PNG — off the critical path. Nothing is encoded twice; `saved` names the files before they exist,
    and `saved.written` completes once they all do (a caller that needs them waits for it)."""

    def __init__(
        self,
        saved: SavedImages,
        files: Sequence[_File],
        *,
        attachment_path: Path,
        attachment: Attachment,
        writer: Executor,
    ) -> None:
        self._saved = saved
        self._files = tuple(files)
        self._attachment_path = attachment_path
        self._attachment = attachment
        self._writer = writer
        self._writing: asyncio.Task[SavedImages] | None = None

    @property
    def saved(self) -> SavedImages:
        """The files, with the attachment in memory and `written` once `write()` has started."""
        return replace(self._saved, upload=self._attachment, written=self._writing)

    def write(self) -> asyncio.Task[SavedImages]:
        """Start writing every file (once; later calls return the same task)."""
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write())
        return self._writing

    async def _write(self) -> SavedImages:
        loop = asyncio.get_running_loop()
        jobs: list[asyncio.Future[Path]] = []
        if self._attachment_path not in {file.path for file in self._files}:
            data = self._attachment.data
            path = self._attachment_path
            jobs.append(loop.run_in_executor(self._writer, _write_returning, path, data))
        # In order on the pool: the attachment (no encoding), the images U/V start from, the grid PNG.
        jobs += [
            loop.run_in_executor(self._writer, _save_png, f.path, f.image, f.recipe, f.png)
            for f in self._files
        ]
        try:
            await asyncio.gather(*jobs)
        except BaseException:
            for job in jobs:
                job.cancel()  # their outcome no longer matters; cancelling keeps them from being reported
            raise
        return self._saved


def _write_returning(path: Path, data: bytes) -> Path:
    write_atomically(path, data)
    return path


def _posted_grid(grid: Image.Image) -> Image.Image:
    """The grid as posted in a compact format: whole, or reduced to fit `POSTED_GRID_MAX_SIDE`."""
    factor = -(-max(grid.size) // POSTED_GRID_MAX_SIDE)
    return grid if factor == 1 else grid.reduce(factor)


async def prepare_job_images(
    result: GenerationResult,
    request: GenerationRequest,
    directory: Path,
    stem: str,
    *,
    image_format: ImageFormat = ImageFormat.PNG,
    attachment_limit_bytes: int | None = DEFAULT_ATTACHMENT_LIMIT,
    poster: Executor | None = None,
    writer: Executor | None = None,
) -> JobImages:
    """Make the grid and encode the file to post (`image_format`, fitted under the limit): the only
    work between the device's last step and the upload. Files are planned as `<stem>.png` (the grid)
    and `<stem>-1.png`…, or `<stem>.png` alone for a single image (an upscale); the attachment is the
    PNG itself when `image_format` is PNG and it fits, else `<stem>.webp`/`.jpg` beside it.

    Encoding runs on `poster` (default: one thread of its own), never on the event loop; `write()`
    runs on `writer` (default: a shared pool of one thread fewer than the CPU has cores)."""
    if not result.images:
        raise ImageError("The result has no images to save.")
    if len(result.seeds) < len(result.images):
        raise ImageError(f"The result has {len(result.images)} images but only {len(result.seeds)} seeds.")
    images = result.images
    cells = [
        _File(
            directory / (f"{stem}.png" if len(images) == 1 else f"{stem}-{n + 1}.png"),
            image,
            recipe_text(request, result, n),
        )
        for n, image in enumerate(images)
    ]
    grid_recipe = recipe_text(request, result) if len(images) == GRID_SIZE else None
    limit = attachment_limit_bytes if attachment_limit_bytes is not None else sys.maxsize

    def encode() -> tuple[_File | None, Attachment, _File]:
        directory.mkdir(parents=True, exist_ok=True)
        if grid_recipe is not None:
            shown = _File(directory / f"{stem}.png", make_grid(images), grid_recipe)
        else:
            shown = cells[0]  # a single image, or a count other than four: the first one is posted
        png = encode_png(shown.image, shown.recipe) if image_format is ImageFormat.PNG else None
        posted = shown.image if png is not None or grid_recipe is None else _posted_grid(shown.image)
        attachment = fit_attachment(posted, shown.recipe, limit, image_format, png=png)
        shown = replace(shown, png=png)
        return (shown if grid_recipe is not None else None), attachment, shown

    grid, attachment, shown = await asyncio.get_running_loop().run_in_executor(
        poster or _default_poster(), encode
    )
    if grid is None:
        cells[0] = shown
    if attachment.extension == "png":
        attachment_path = shown.path
    else:
        attachment_path = shown.path.with_suffix(f".{attachment.extension}")
    files = [*cells, grid] if grid is not None else cells  # the grid PNG last: nothing waits for it
    saved = SavedImages(
        grid=grid.path if grid is not None else None,
        images=tuple(cell.path for cell in cells),
        attachment=attachment_path,
    )
    return JobImages(
        saved,
        files,
        attachment_path=attachment_path,
        attachment=attachment,
        writer=writer or _default_encoder(),
    )


async def save_job_images(
    result: GenerationResult,
    request: GenerationRequest,
    directory: Path,
    stem: str,
    *,
    image_format: ImageFormat = ImageFormat.PNG,
    attachment_limit_bytes: int | None = DEFAULT_ATTACHMENT_LIMIT,
    executor: Executor | None = None,
) -> SavedImages:
    """Write a job's grid as `<stem>.png` and its images as `<stem>-1.png`…, each with its own recipe,
    and the attachment to post (`prepare_job_images`), all at once. Encoding runs on `executor`
    (default: the shared pools), never on the event loop."""
    images = await prepare_job_images(
        result,
        request,
        directory,
        stem,
        image_format=image_format,
        attachment_limit_bytes=attachment_limit_bytes,
        poster=executor,
        writer=executor,
    )
    return await images.write()


save_result = save_job_images
"""The name `docs/interfaces` announced; the same function."""
