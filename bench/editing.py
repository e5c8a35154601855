"""Benchmark: what the editing tools cost (Zoom Out, Pan: the inpainting pipeline).

1. On the device: a zoom-out 2x and a pan against a plain grid of the same output size, prompt, seed
   and steps, on the trained tiny model (median of interleaved rounds). The zoom paints a 64×64 canvas
   (the 1:1 grid's size); the pan grows a 56×56 picture to 80×56 (the 3:2 grid's size). Target: an
   edit costs at most 1.10× the plain grid.
2. Memory: resident memory with text-to-image alone (one call made) against after the inpainting
   pipeline has been derived and used once, first on a pipeline of Stable Diffusion 1.5's shapes with
   random weights (so the weights dominate the process, as in `bench.weight_sharing`), then on the
   tiny model. Target: ≤ 1.10× text-to-image alone (the inpainting pipeline shares every weight).
3. `--seams` instead: each tool's seams on what a member edits (U1 and U2 of a grid, upscaled as the U
   button does; a 4:3 one for Make Square), with the measures of `tests/engine/backends/test_tiny_edits.py`:
   the brightness step across the border over the image's typical step (target ≤ 1), how far apart the
   colours on the two sides are (levels), the new area's variance over the source's (0 = a flat fill).
   For Vary (Region) also the step the unedited upscale itself scores with that mask: where the chosen
   cells' edges run along the shapes, the image's own content is over 1.

    .venv/bin/python -m bench.editing [--rounds 7] [--steps 20] [--no-memory]
    .venv/bin/python -m bench.editing --seams             # the seams instead
    .venv/bin/python -m bench.editing --save docs/img     # the README's pictures instead
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from bench.weight_sharing import build_sd15_shaped_pipeline, rss_mib
from engine.backends import load_backend
from engine.backends._model import LoadedModel
from engine.backends._soft_mask import SoftMask
from engine.backends._upscale import enlarge
from engine.backends.diffusion import DiffusersBackend
from engine.edits import canvas_for, parse_edit
from engine.types import UPSCALE_CREATIVE, UPSCALE_SUBTLE, GenerationRequest, GenerationResult, Mode

PROMPT = "two white squares on a green background"
TARGET = 1.10


def _generate(backend: DiffusersBackend, request: GenerationRequest) -> GenerationResult:
    return backend.generate(request, on_progress=lambda _: None, cancelled=threading.Event())


def _timed(backend: DiffusersBackend, request: GenerationRequest) -> float:
    started = time.perf_counter()
    _generate(backend, request)
    return time.perf_counter() - started


def time_part(args: argparse.Namespace, folder: Path) -> None:
    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    cell = _generate(backend, GenerationRequest(PROMPT, seed=1234, steps=args.steps)).images[0]
    cell.save(square := folder / "square.png")
    cell.resize((56, 56), Image.Resampling.LANCZOS).save(small := folder / "small.png")
    requests = {
        "grid 64x64": GenerationRequest(PROMPT, seed=7, steps=args.steps),
        "zoom 2x 64x64": GenerationRequest(
            PROMPT, seed=7, steps=args.steps, mode=Mode.EDIT, init_image=square, edit="zoom 2"
        ),
        "grid 80x56": GenerationRequest(PROMPT, seed=7, steps=args.steps, aspect_ratio=(3, 2)),
        "pan left 80x56": GenerationRequest(
            PROMPT, seed=7, steps=args.steps, mode=Mode.EDIT, init_image=small, edit="pan left"
        ),
    }
    sizes = {
        name: _generate(backend, request).images[0].size for name, request in requests.items()
    }  # warm-up
    assert sizes["grid 64x64"] == sizes["zoom 2x 64x64"], sizes
    assert sizes["grid 80x56"] == sizes["pan left 80x56"], sizes
    times: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(args.rounds):  # interleaved, so the machine's drift hits all four alike
        for name, request in requests.items():
            times[name].append(_timed(backend, request))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"tiny model, 4 images, {args.steps} steps, median of {args.rounds} interleaved rounds:")
    for name, value in median.items():
        rounds = ", ".join(f"{t * 1000:.0f}" for t in times[name])
        print(f"  {name:16s} {value * 1000:7.0f} ms   (rounds: {rounds})")
    for edit, grid in (("zoom 2x 64x64", "grid 64x64"), ("pan left 80x56", "grid 80x56")):
        ratio = median[edit] / median[grid]
        verdict = "PASS" if ratio <= TARGET else "FAIL"
        print(f"  {edit} / {grid}: {ratio:.3f} (target <= {TARGET:.2f}) -> {verdict}")
    backend.close()


def _peak_mib() -> float:
    """Peak resident set size of this process so far (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _memory(model: LoadedModel, side: int, label: str) -> None:
    """RSS after one text-to-image call, then after deriving the inpainting pipeline and one call of it."""
    kwargs: dict[str, Any] = {
        "prompt": PROMPT,
        "width": side,
        "height": side,
        "num_inference_steps": 1,
        "guidance_scale": 1.0,
        "output_type": "pil",
    }
    model.text2img(**kwargs)
    gc.collect()
    text2img, text2img_peak = rss_mib(), _peak_mib()
    source = Image.effect_noise((side, side), 60).convert("RGB")
    canvas = canvas_for(source, parse_edit("zoom 2"), multiple=8, max_side=None)
    mask = SoftMask(canvas.latent_strengths(8), 8).first()
    model.inpaint(**kwargs, image=canvas.image, mask_image=mask, strength=1.0)
    gc.collect()
    inpaint, inpaint_peak = rss_mib(), _peak_mib()
    ratio = inpaint / text2img
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"{label} ({side}x{side}, one step each):")
    print(f"  RSS text-to-image (one call):          {text2img:8.0f} MiB  (peak {text2img_peak:.0f})")
    print(f"  RSS + inpainting derived and one call: {inpaint:8.0f} MiB  (peak {inpaint_peak:.0f})")
    peak = inpaint_peak / text2img_peak
    print(f"  ratio {ratio:.3f}, peak ratio {peak:.3f} (target <= {TARGET:.2f}) -> {verdict}")


def memory_part() -> None:
    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    _memory(backend.model, 64, "tiny model (torch itself dominates)")
    pipe = build_sd15_shaped_pipeline()
    pipe.set_progress_bar_config(disable=True)
    _memory(LoadedModel(pipe, "sd15-shaped-random"), 128, "SD 1.5-shaped, random weights")


def _upscaled(
    backend: DiffusersBackend, folder: Path, name: str, cells: tuple[int, ...], **fields: Any
) -> list[tuple[Path, Image.Image]]:
    """Cells `cells` (0-based) of the prompt's grid (seed 1234), each upscaled as the U button does
    (`test_tiny_edits.upscale`): what the editing tools' buttons sit under."""
    from tests.engine.backends.test_tiny_edits import upscale

    grid = _generate(backend, GenerationRequest(PROMPT, seed=1234, **fields))
    out = []
    for cell in cells:
        grid.images[cell].save(source := folder / f"{name}-u{cell + 1}.png")
        out.append(upscale(backend, source, grid.seeds[cell], folder))
    return out


_SEAM_EDITS = (
    "zoom 2",
    "zoom 1.5",
    "pan left",
    "pan up",
    "square",
    "region 1 5 9",
    "region 5",
    "region 1 2 3",
    "region 2 4 6 8",
)


def seams_part(folder: Path) -> None:
    from tests.engine.backends.test_tiny_edits import canvas_of, colour_step, seam_ratio, variance_ratio

    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    squares = _upscaled(backend, folder, "square", (0, 1))
    wide = _upscaled(backend, folder, "wide", (0,), aspect_ratio=(4, 3))
    print("tiny model, fills seed 7; U1 and U2 of seed 1234 upscaled (Make Square: U1 of a 4:3 grid):")
    for spec in _SEAM_EDITS:
        figures: dict[str, list[float]] = {"seam": [], "colour": [], "variance": []}
        for path, source in wide if spec == "square" else squares:
            canvas = canvas_of(source, spec)
            request = GenerationRequest(PROMPT, seed=7, mode=Mode.EDIT, init_image=path, edit=spec)
            for image in _generate(backend, request).images:
                figures["seam"].append(seam_ratio(image, canvas.mask))
                figures["colour"].append(colour_step(image, canvas))
                figures["variance"].append(variance_ratio(image, canvas, source))
        line = "  ".join(
            f"{name} {min(values):.2f}–{max(values):.2f} (mean {statistics.mean(values):.2f})"
            for name, values in figures.items()
        )
        verdict = "PASS" if statistics.mean(figures["seam"]) <= 1.0 else "FAIL"
        print(f"  {spec:14s} {line}  seam target <= 1 -> {verdict}")
        if spec.startswith("region"):  # the canvas is the source itself: how its own content scores
            unedited = [seam_ratio(source, canvas_of(source, spec).mask) for _, source in squares]
            print(
                f"  {'':14s} the unedited upscales with this mask: seam "
                + ", ".join(f"{v:.2f}" for v in unedited)
            )
    backend.close()


def save_pictures(folder: Path, out: Path) -> None:
    """`editing-*.png`: the upscale a member edits, then the four fills each tool paints from it on the
    tiny model; `editing-upscale.png`: a cell and its upscales."""
    backend = load_backend("tiny", device="cpu")
    assert isinstance(backend, DiffusersBackend)
    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()

    def strip(pictures: list[tuple[str, Image.Image]], path: Path, scale: int = 3) -> None:
        height = max(image.height for _, image in pictures) * scale
        width = sum(image.width * scale + 8 for _, image in pictures)
        canvas = Image.new("RGB", (width, height + 16), "white")
        x = 0
        for label, image in pictures:
            big = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
            canvas.paste(big, (x, 16))
            ImageDraw.Draw(canvas).text((x + 2, 2), label, fill="black", font=font)
            x += image.width * scale + 8
        canvas.save(path)

    ((source, upscaled),) = _upscaled(backend, folder, "square", (1,))
    ((wide_source, wide),) = _upscaled(backend, folder, "wide", (0,), aspect_ratio=(4, 3))
    edits = [
        ("zoom-2x", "zoom 2", source, upscaled),
        ("zoom-1.5x", "zoom 1.5", source, upscaled),
        ("pan-left", "pan left", source, upscaled),
        ("pan-up", "pan up", source, upscaled),
        ("make-square", "square", wide_source, wide),
        ("vary-region", "region 1 5 9", source, upscaled),
    ]
    for name, spec, path, picture in edits:
        request = GenerationRequest(PROMPT, seed=7, mode=Mode.EDIT, init_image=path, edit=spec)
        result = _generate(backend, request)
        label = result.extra["mode"]
        strip(
            [("upscale", picture)] + [(f"{label} #{n}", image) for n, image in enumerate(result.images, 1)],
            out / f"editing-{name}.png",
            scale=2,
        )
    cell = _generate(backend, GenerationRequest(PROMPT, seed=1234)).images[1]
    cell.save(cell_path := folder / "cell.png")
    upscales = [("resampled 2x", enlarge(cell))]
    for strength in (UPSCALE_SUBTLE, UPSCALE_CREATIVE):
        request = GenerationRequest(
            PROMPT, seed=5, mode=Mode.UPSCALE, init_image=cell_path, strength=strength, count=1
        )
        result = _generate(backend, request)
        upscales.append((result.extra["mode"], result.images[0]))
    strip([("source", cell), *upscales], out / "editing-upscale.png", scale=2)
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory part (it needs ~6 GiB)")
    parser.add_argument("--save", type=Path, help="write the README's pictures into this folder and stop")
    parser.add_argument("--seams", action="store_true", help="measure each tool's seams and stop")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as scratch:
        if args.save is not None:
            save_pictures(Path(scratch), args.save)
            return
        if args.seams:
            seams_part(Path(scratch))
            return
        time_part(args, Path(scratch))
    if not args.no_memory:
        memory_part()


if __name__ == "__main__":
    main()
