"""Grid layout, cell cropping, the A1111 recipe, and files written off the event loop."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.images import (
    ImageError,
    ImageFormat,
    crop_cell,
    encode_png,
    fit_attachment,
    format_parameters,
    make_grid,
    prepare_job_images,
    read_recipe,
    recipe_text,
    sampler_label,
    save_job_images,
)
from engine.types import GenerationRequest, GenerationResult, Mode

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def make_result(images: list[Image.Image], *, seeds: tuple[int, ...] | None = None) -> GenerationResult:
    width, height = images[0].size
    return GenerationResult(
        images=tuple(images),
        seeds=seeds or tuple(100 + i for i in range(len(images))),
        width=width,
        height=height,
        steps=4,
        cfg=7.5,
        sampler="euler_a",
        model="tiny",
    )


# --- grid -----------------------------------------------------------------------------------


def test_grid_places_cells_like_midjourney_edge_to_edge() -> None:
    images = [Image.new("RGB", (30, 20), colour) for colour in COLOURS]
    grid = make_grid(images)
    assert grid.size == (60, 40)
    # 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right, with no gutter between them.
    assert grid.getpixel((29, 19)) == COLOURS[0]
    assert grid.getpixel((30, 0)) == COLOURS[1]
    assert grid.getpixel((0, 20)) == COLOURS[2]
    assert grid.getpixel((59, 39)) == COLOURS[3]


def test_every_cell_crops_back_exactly() -> None:
    images = [noise_image(24, 16, seed) for seed in range(4)]
    grid = make_grid(images)
    for cell, original in enumerate(images, start=1):
        cropped = crop_cell(grid, cell, cell_size=(24, 16))
        assert cropped.size == original.size
        assert cropped.tobytes() == original.tobytes()


def test_grid_converts_other_modes_to_rgb() -> None:
    images = [Image.new("RGBA", (8, 8), (*colour, 128)) for colour in COLOURS]
    grid = make_grid(images)
    assert grid.mode == "RGB"
    assert grid.getpixel((8, 0)) == COLOURS[1]


def test_grid_refuses_wrong_count_and_mixed_sizes() -> None:
    with pytest.raises(ImageError, match="exactly 4 images; got 3"):
        make_grid([Image.new("RGB", (8, 8))] * 3)
    mixed = [Image.new("RGB", (8, 8))] * 3 + [Image.new("RGB", (8, 9))]
    with pytest.raises(ImageError, match="image 4 is 8x9"):
        make_grid(mixed)


def test_crop_cell_rejects_bad_cells_and_grids() -> None:
    grid = make_grid([Image.new("RGB", (8, 8))] * 4)
    with pytest.raises(ImageError, match="numbered 1 to 4; got 0"):
        crop_cell(grid, 0)
    with pytest.raises(ImageError, match="numbered 1 to 4; got 5"):
        crop_cell(grid, 5)
    with pytest.raises(ImageError, match="not the 4x4 expected"):
        crop_cell(grid, 1, cell_size=(4, 4))
    with pytest.raises(ImageError, match="side is odd"):
        crop_cell(Image.new("RGB", (9, 8)), 1)


# --- recipe ---------------------------------------------------------------------------------


def test_parameters_follow_the_a1111_layout() -> None:
    text = format_parameters(
        "a red fox in snow",
        "blurry",
        steps=20,
        sampler="euler_a",
        cfg=7.0,
        seed=123,
        width=768,
        height=512,
        model="stabilityai/sdxl-turbo",
    )
    assert text.splitlines() == [
        "a red fox in snow",
        "Negative prompt: blurry",
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 768x512, Model: stabilityai/sdxl-turbo",
    ]


def test_parameters_omit_an_empty_negative_and_quote_awkward_values() -> None:
    text = format_parameters(
        "fox",
        "  ",
        steps=4,
        sampler="dpmpp_2m_karras",
        cfg=6.5,
        seed=7,
        width=64,
        height=64,
        model="C:/models, mine",
        extra={"Denoising strength": "0.6"},
    )
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[1] == (
        'Steps: 4, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 7, Size: 64x64, Model: "C:/models, mine", '
        "Denoising strength: 0.6"
    )


def test_sampler_labels_match_a1111_and_unknown_names_pass_through() -> None:
    assert sampler_label("euler") == "Euler"
    assert sampler_label("dpmpp_2m") == "DPM++ 2M"
    assert sampler_label("my_sampler") == "my_sampler"


def test_recipe_text_uses_each_cells_seed_and_the_first_for_the_grid() -> None:
    request = GenerationRequest(prompt="a fox", negative_prompt="dog", seed=100)
    result = make_result([Image.new("RGB", (8, 8))] * 4)
    assert "Seed: 102," in recipe_text(request, result, 2)
    assert "Seed: 100," in recipe_text(request, result)
    assert recipe_text(request, result).startswith("a fox\nNegative prompt: dog\nSteps: 4, ")
    with pytest.raises(ImageError, match="no image 5"):
        recipe_text(request, result, 4)


def test_recipe_text_records_variation_strength_and_tiling() -> None:
    request = GenerationRequest(prompt="a fox", mode=Mode.VARIATION, strength=0.6, tile=True)
    text = recipe_text(request, make_result([Image.new("RGB", (8, 8))]), 0)
    assert text.endswith("Model: tiny, Denoising strength: 0.6, Tiling: True")


def test_recipe_text_says_which_images_the_safety_check_flagged() -> None:
    request = GenerationRequest(prompt="a fox")
    images = [Image.new("RGB", (8, 8))] * 4
    flagged = replace(make_result(images), flagged=(True, False, True, False), checker="red-test")
    assert recipe_text(request, flagged).endswith('Flagged: "image 1, 3 by red-test"')
    assert recipe_text(request, flagged, 0).endswith("Flagged: by red-test")
    assert "Flagged" not in recipe_text(request, flagged, 1)
    clean = replace(make_result(images), flagged=(False,) * 4, checker="red-test")
    assert "Flagged" not in recipe_text(request, clean)


# --- encoding -------------------------------------------------------------------------------


def test_png_carries_the_recipe_and_the_exact_pixels() -> None:
    image = noise_image(32, 24, 1)
    data = encode_png(image, "a fox\nSteps: 4")
    assert read_recipe(data) == "a fox\nSteps: 4"
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.tobytes() == image.tobytes()


def test_png_is_byte_identical_for_identical_input() -> None:
    image = noise_image(32, 32, 2)
    assert encode_png(image, "fox") == encode_png(image.copy(), "fox")
    assert encode_png(image, "fox") != encode_png(image, "cat")


def test_recipe_outside_latin1_survives() -> None:
    recipe = "un renard roux 🦊 雪の中\nSteps: 4"
    assert read_recipe(encode_png(Image.new("RGB", (4, 4)), recipe)) == recipe


def test_image_without_a_recipe_reads_none() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    assert read_recipe(buffer.getvalue()) is None


def test_attachment_stays_png_when_it_fits() -> None:
    attachment = fit_attachment(noise_image(64, 64, 3), "fox", 10 * 1024 * 1024)
    assert attachment.extension == "png"
    assert attachment.filename("grid") == "grid.png"


def test_oversized_attachment_falls_back_to_webp_with_the_recipe() -> None:
    image = noise_image(256, 256, 4)  # noise: PNG cannot shrink it (~196 KB)
    limit = 60_000
    attachment = fit_attachment(image, "a fox 🦊\nSteps: 4", limit)
    assert attachment.extension == "webp"
    assert len(attachment.data) <= limit
    assert read_recipe(attachment.data) == "a fox 🦊\nSteps: 4"
    with Image.open(io.BytesIO(attachment.data)) as decoded:
        assert decoded.format == "WEBP"
        exif = decoded.getexif().get_ifd(0x8769)
        assert exif[0x9286].startswith(b"UNICODE\x00")  # the character code A1111's reader expects


def test_attachment_that_cannot_fit_says_which_setting_to_raise() -> None:
    with pytest.raises(ImageError, match="IMAGINE_ATTACHMENT_LIMIT_MB"):
        fit_attachment(noise_image(128, 128, 5), "fox", 100)


# --- saving ---------------------------------------------------------------------------------


async def test_save_job_images_writes_grid_and_cells_with_their_seeds(tmp_path: Path) -> None:
    images = [noise_image(40, 24, seed) for seed in range(4)]
    request = GenerationRequest(prompt="a red fox in snow", seed=7)
    result = make_result(images, seeds=(7, 8, 9, 10))

    saved = await save_job_images(result, request, tmp_path / "out", "grid")

    assert saved.grid == tmp_path / "out" / "grid.png"
    assert saved.attachment == saved.grid
    assert [path.name for path in saved.images] == [f"grid-{n}.png" for n in (1, 2, 3, 4)]
    with Image.open(saved.grid) as grid:
        assert grid.size == (80, 48)
        grid_pixels = grid.convert("RGB")
    for n, path in enumerate(saved.images):
        assert f"Seed: {7 + n}," in (read_recipe(path) or "")
        with Image.open(path) as cell:
            assert cell.tobytes() == images[n].tobytes()
            assert crop_cell(grid_pixels, n + 1).tobytes() == cell.tobytes()
    assert "Seed: 7," in (read_recipe(saved.grid) or "")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "grid-1.png",
        "grid-2.png",
        "grid-3.png",
        "grid-4.png",
        "grid.png",
    ]


async def test_saving_twice_writes_identical_bytes(tmp_path: Path) -> None:
    images = [noise_image(16, 16, seed) for seed in range(4)]
    request = GenerationRequest(prompt="fox", seed=1)
    first = await save_job_images(make_result(images), request, tmp_path / "a", "grid")
    second = await save_job_images(make_result(images), request, tmp_path / "b", "grid")
    for one, two in zip((first.grid, *first.images), (second.grid, *second.images), strict=True):
        assert one is not None
        assert two is not None
        assert one.read_bytes() == two.read_bytes()


async def test_single_image_result_is_written_without_a_grid(tmp_path: Path) -> None:
    request = GenerationRequest(prompt="fox", mode=Mode.UPSCALE, seed=3, count=1)
    saved = await save_job_images(make_result([noise_image(32, 32, 9)], seeds=(3,)), request, tmp_path, "up")
    assert saved.grid is None
    assert saved.images == (tmp_path / "up.png",)
    assert saved.attachment == tmp_path / "up.png"
    assert "Seed: 3," in (read_recipe(saved.attachment) or "")


async def test_grid_over_the_limit_gets_a_lossy_copy_to_post(tmp_path: Path) -> None:
    images = [noise_image(128, 128, seed) for seed in range(4)]
    saved = await save_job_images(
        make_result(images), GenerationRequest(prompt="fox"), tmp_path, "grid", attachment_limit_bytes=80_000
    )
    assert saved.grid == tmp_path / "grid.png"
    assert saved.attachment == tmp_path / "grid.webp"
    assert saved.attachment.stat().st_size <= 80_000
    assert read_recipe(saved.attachment) == read_recipe(saved.grid)


async def test_empty_result_is_refused(tmp_path: Path) -> None:
    empty = GenerationResult(
        images=(), seeds=(), width=8, height=8, steps=1, cfg=1, sampler="euler", model="m"
    )
    with pytest.raises(ImageError, match="no images"):
        await save_job_images(empty, GenerationRequest(prompt="fox"), tmp_path, "grid")


# --- the Discord format, posted before the files are written --------------------------------


@pytest.mark.parametrize(
    ("image_format", "pil_format"), [(ImageFormat.WEBP, "WEBP"), (ImageFormat.JPEG, "JPEG")]
)
def test_compact_attachment_is_lossy_with_the_recipe_in_exif(
    image_format: ImageFormat, pil_format: str
) -> None:
    image = noise_image(96, 64, 6)
    attachment = fit_attachment(image, "a fox 🦊\nSteps: 4", 10 * 1024 * 1024, image_format)
    assert attachment.extension == image_format.extension
    assert read_recipe(attachment.data) == "a fox 🦊\nSteps: 4"
    with Image.open(io.BytesIO(attachment.data)) as decoded:
        assert decoded.format == pil_format
        assert decoded.size == (96, 64)
        assert decoded.getexif().get_ifd(0x8769)[0x9286].startswith(b"UNICODE\x00")


def test_a_compact_attachment_over_the_limit_keeps_its_format_at_lower_quality() -> None:
    image = noise_image(256, 256, 4)
    first = fit_attachment(image, "fox", 10 * 1024 * 1024, ImageFormat.JPEG)
    limit = len(first.data) * 2 // 3
    smaller = fit_attachment(image, "fox", limit, ImageFormat.JPEG)
    assert smaller.extension == "jpg"
    assert len(smaller.data) <= limit
    with Image.open(io.BytesIO(smaller.data)) as decoded:
        assert decoded.size == (256, 256)  # a lower quality was enough; no need to shrink


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_the_attachment_is_encoded_before_any_file_is_written(tmp_path: Path) -> None:
    images = [noise_image(40, 24, seed) for seed in range(4)]
    request = GenerationRequest(prompt="a red fox in snow", seed=7)
    release = threading.Event()
    with ThreadPoolExecutor(1) as poster, ThreadPoolExecutor(1) as writer:
        writer.submit(release.wait, 10)  # a busy writer: nothing of this job is written yet
        prepared = await prepare_job_images(
            make_result(images, seeds=(7, 8, 9, 10)),
            request,
            tmp_path,
            "grid",
            image_format=ImageFormat.WEBP,
            poster=poster,
            writer=writer,
        )
        pending = prepared.saved
        assert pending.upload is not None
        assert pending.written is None  # not started
        assert pending.attachment == tmp_path / "grid.webp"
        assert read_recipe(pending.upload.data) == recipe_text(
            request, make_result(images, seeds=(7, 8, 9, 10))
        )
        writing = prepared.write()
        assert prepared.write() is writing
        assert prepared.saved.written is writing
        assert _names(tmp_path) == []
        release.set()
        saved = await writing
    assert saved.grid == tmp_path / "grid.png"
    assert saved.images == tuple(tmp_path / f"grid-{n}.png" for n in (1, 2, 3, 4))
    assert saved.attachment.read_bytes() == pending.upload.data  # posted and kept: one encode
    assert _names(tmp_path) == [
        "grid-1.png",
        "grid-2.png",
        "grid-3.png",
        "grid-4.png",
        "grid.png",
        "grid.webp",
    ]
    assert read_recipe(saved.grid) == read_recipe(saved.attachment)


async def test_a_single_image_is_posted_compact_and_kept_as_png(tmp_path: Path) -> None:
    request = GenerationRequest(prompt="fox", mode=Mode.UPSCALE, seed=3, count=1)
    result = make_result([noise_image(32, 32, 9)], seeds=(3,))
    saved = await save_job_images(result, request, tmp_path, "up", image_format=ImageFormat.JPEG)
    assert saved.grid is None
    assert saved.images == (tmp_path / "up.png",)
    assert saved.attachment == tmp_path / "up.jpg"
    assert read_recipe(saved.attachment) == read_recipe(saved.images[0])


@pytest.mark.parametrize(
    ("image_format", "cell", "posted"),
    [
        (ImageFormat.WEBP, (1536, 864), (1536, 864)),  # a 3072×1728 grid, halved
        (ImageFormat.JPEG, (1100, 1100), (1100, 1100)),  # 2200², halved
        (ImageFormat.WEBP, (1024, 1024), (2048, 2048)),  # fits: posted whole
        (ImageFormat.PNG, (1536, 864), (3072, 1728)),  # a PNG grid is the kept file itself
    ],
)
async def test_a_large_grid_is_posted_reduced_in_a_compact_format(
    tmp_path: Path, image_format: ImageFormat, cell: tuple[int, int], posted: tuple[int, int]
) -> None:
    images = [Image.new("RGB", cell, colour) for colour in ("red", "green", "blue", "white")]
    request = GenerationRequest(prompt="four colours", seed=1)
    saved = await save_job_images(make_result(images), request, tmp_path, "big", image_format=image_format)
    with Image.open(saved.attachment) as shown:
        assert shown.size == posted
        # Reduced, not cropped: each quarter still shows its cell's colour.
        quarter = shown.convert("RGB").crop((0, 0, posted[0] // 2, posted[1] // 2))
        assert quarter.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))[0] > 200
    assert read_recipe(saved.attachment) == read_recipe(saved.grid)
    with Image.open(saved.grid) as kept:
        assert kept.size == (cell[0] * 2, cell[1] * 2)


async def test_a_large_single_image_is_posted_whole(tmp_path: Path) -> None:
    request = GenerationRequest(prompt="fox", mode=Mode.UPSCALE, seed=3, count=1)
    result = make_result([Image.new("RGB", (3072, 1728), "orange")], seeds=(3,))
    saved = await save_job_images(result, request, tmp_path, "up", image_format=ImageFormat.WEBP)
    with Image.open(saved.attachment) as shown:
        assert shown.size == (3072, 1728)  # an upscale is the full picture, in Discord too
