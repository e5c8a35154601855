"""The editing tools' geometry without a model: parsing `GenerationRequest.edit`, canvas sizes and
placement, feathered masks, the pipeline's latent-aligned mask, and compositing the original back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.edits import (
    COLOUR_MATCH_LIMIT,
    REGION_RAMP,
    Canvas,
    Direction,
    Edit,
    EditKind,
    canvas_for,
    composite,
    parse_edit,
)
from engine.errors import GenerationError


def _source(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A picture with structure everywhere (smooth colours plus noise), so every pixel is checkable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _canvas(spec: str, source: Image.Image | None = None, max_side: int | None = None) -> Canvas:
    return canvas_for(source or _source(), parse_edit(spec), multiple=8, max_side=max_side)


def _alpha(canvas: Canvas) -> np.ndarray:
    return np.asarray(canvas.mask, dtype=np.float64) / 255


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "edit", "label"),
    [
        ("zoom 2", Edit(EditKind.ZOOM, factor=2.0), "zoom 2x"),
        ("zoom 1.5", Edit(EditKind.ZOOM, factor=1.5), "zoom 1.5x"),
        ("ZOOM 1.25", Edit(EditKind.ZOOM, factor=1.25), "zoom 1.25x"),
        ("pan left", Edit(EditKind.PAN, direction=Direction.LEFT), "pan left"),
        ("pan Down", Edit(EditKind.PAN, direction=Direction.DOWN), "pan down"),
        ("square", Edit(EditKind.SQUARE), "make square"),
        ("region 9 1 5", Edit(EditKind.REGION, cells=(1, 5, 9)), "vary region 1,5,9"),
        ("region 2,3 3", Edit(EditKind.REGION, cells=(2, 3)), "vary region 2,3"),
    ],
)
def test_each_edit_parses_and_names_itself(spec: str, edit: Edit, label: str) -> None:
    assert parse_edit(spec) == edit
    assert parse_edit(spec).label == label


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "must say what to paint"),
        ("zoom", "above 1 and at most 2.*got nothing"),
        ("zoom 1", "above 1 and at most 2.*got 1"),
        ("zoom 2.5", "above 1 and at most 2"),
        ("zoom big", "above 1 and at most 2"),
        ("zoom nan", "above 1 and at most 2"),
        ("zoom 2 2", "above 1 and at most 2"),
        ("pan", "one of left, right, up, down"),
        ("pan sideways", "one of left, right, up, down"),
        ("square 2", "nothing after it"),
        ("region", "cells 1–9"),
        ("region 0", "cells 1–9"),
        ("region 10", "cells 1–9"),
        ("region one", "cells 1–9"),
        ("rotate 90", "one of `zoom 2`, `pan left`, `square` or `region 1 5 9`"),
    ],
)
def test_a_bad_edit_is_one_clear_sentence(spec: str, message: str) -> None:
    with pytest.raises(GenerationError, match=message):
        parse_edit(spec)


# --- canvas sizes and placement --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size", "box"),
    [
        ("zoom 2", (64, 48), (16, 12, 48, 36)),
        ("zoom 1.5", (64, 48), (10, 8, 53, 40)),  # 43x32 in the middle
        ("pan left", (96, 48), (32, 0, 96, 48)),
        ("pan right", (96, 48), (0, 0, 64, 48)),
        ("pan up", (64, 72), (0, 24, 64, 72)),  # half of 48 is 24
        ("pan down", (64, 72), (0, 0, 64, 48)),
        ("square", (64, 64), (0, 8, 64, 56)),
        ("region 5", (64, 48), (0, 0, 64, 48)),
    ],
)
def test_the_canvas_size_and_where_the_source_sits(
    spec: str, size: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    canvas = _canvas(spec)
    assert (canvas.size, canvas.box) == (size, box)
    assert canvas.mask.size == canvas.area.size == size
    assert (canvas.image.mode, canvas.mask.mode, canvas.area.mode) == ("RGB", "L", "L")


def test_a_pan_places_the_source_exactly_and_a_zoom_places_it_shrunk() -> None:
    source = _source()
    pan = _canvas("pan left", source)
    assert pan.image.crop(pan.box).tobytes() == source.tobytes()
    zoom = _canvas("zoom 2", source)
    shrunk = source.resize((32, 24), Image.Resampling.LANCZOS)
    assert zoom.image.crop(zoom.box).tobytes() == shrunk.tobytes()


def test_sizes_are_whole_multiples_even_for_an_odd_source() -> None:
    source = _source(60, 44)
    for spec in ("zoom 2", "pan left", "pan up", "square", "region 1"):
        width, height = _canvas(spec, source).size
        assert (width % 8, height % 8) == (0, 0), spec
    assert _canvas("pan left", source).size == (88, 48)  # 60 + 24, rounded up to 88; 44 up to 48
    region = _canvas("region 1", source)
    assert np.asarray(region.area)[44:, :].min() == 255  # the rounding's extra rows are painted


def test_make_square_grows_the_short_side_evenly_and_refuses_a_square() -> None:
    tall = _canvas("square", _source(48, 80))
    assert (tall.size, tall.box) == ((80, 80), (16, 0, 64, 80))
    with pytest.raises(GenerationError, match="already square"):
        _canvas("square", _source(64, 64))


def test_a_pan_stops_at_the_largest_side_and_refuses_when_it_cannot_grow() -> None:
    assert _canvas("pan left", max_side=80).size == (80, 48)  # 16 of the 32 it wanted
    assert _canvas("pan up", max_side=100).size == (64, 72)  # room to spare
    with pytest.raises(GenerationError, match=r"already at the largest side .*\(64 px\).*can't pan right"):
        _canvas("pan right", max_side=64)
    with pytest.raises(GenerationError, match="already at the largest side"):
        _canvas("pan right", max_side=70)  # 70 is not a whole number of 8 px steps past 64


@pytest.mark.parametrize("spec", ["zoom 2", "square", "region 1"])
def test_an_edit_past_the_largest_side_is_refused(spec: str) -> None:
    with pytest.raises(GenerationError, match=r"64×\d+ image, larger than the largest side .*\(56 px\)"):
        _canvas(spec, max_side=56)


# --- masks ---------------------------------------------------------------------------------


def test_new_area_is_all_paint_and_the_feather_fades_out_inside_the_source() -> None:
    canvas = _canvas("pan left")
    alpha = _alpha(canvas)
    assert canvas.feather == 3  # 1/16 of 48
    assert alpha[:, :32].min() == 1.0
    ramp = alpha[20, 32 : 32 + canvas.feather + 2]
    assert ramp.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0], abs=0.01)
    assert alpha[:, 32 + canvas.feather :].max() == 0.0
    area = np.asarray(canvas.area) == 255
    assert np.array_equal(area, np.pad(np.ones((48, 32), dtype=bool), ((0, 0), (0, 64))))


def test_a_zoom_fades_on_all_four_sides_of_the_shrunk_source() -> None:
    canvas = _canvas("zoom 2")
    alpha = _alpha(canvas)
    left, top, right, bottom = canvas.box
    inner = alpha[
        top + canvas.feather : bottom - canvas.feather, left + canvas.feather : right - canvas.feather
    ]
    assert inner.size > 0
    assert inner.max() == 0.0
    for line in (alpha[24, left:right], alpha[top:bottom, 32]):
        assert line[0] == 1.0
        assert line[-1] == 1.0
        assert np.all(np.diff(line[: len(line) // 2]) <= 0)  # and fade monotonically inwards


def test_a_region_is_its_cells_with_the_feather_inside_them() -> None:
    canvas = _canvas("region 1 5 9")
    alpha = _alpha(canvas)
    area = np.asarray(canvas.area) == 255
    xs, ys = [0, 21, 43, 64], [0, 16, 32, 48]  # thirds of 64x48, rounded
    cells = np.zeros_like(area)
    for cell in (1, 5, 9):
        row, col = divmod(cell - 1, 3)
        cells[ys[row] : ys[row + 1], xs[col] : xs[col + 1]] = True
    assert np.array_equal(area, cells)
    assert alpha[~cells].max() == 0.0  # nothing outside the cells changes
    assert alpha[8, 0] == 1.0  # cell 1 at the image's edge has nothing to fade into there
    assert alpha[8, 20] == 0.0  # but its first pixel next to cell 2 is still the original
    assert alpha[24, 32] == 1.0  # the middle of cell 5
    assert _alpha(_canvas("region 1 2 3 4 5 6 7 8 9")).min() == 1.0


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ("zoom 2", (64, 48)),
        ("zoom 1.5", (64, 48)),
        ("zoom 1.5", (128, 128)),
        ("pan up", (64, 48)),
        ("square", (64, 48)),
        ("region 1 5 9", (64, 48)),
        ("region 2", (128, 128)),
    ],
)
def test_the_pipeline_paints_the_whole_latents_in_the_area_and_keeps_those_it_shares(
    spec: str, size: tuple[int, int]
) -> None:
    canvas = _canvas(spec, _source(*size))
    strengths = canvas.latent_strengths(8)
    area = (np.asarray(canvas.area) == 255).reshape(strengths.shape[0], 8, strengths.shape[1], 8)
    whole = area.all(axis=(1, 3))
    assert whole.any()
    assert np.array_equal(strengths > 0, whole)  # every latent wholly in the area, and no other
    if not spec.startswith("region"):
        assert set(np.unique(strengths)) == {0.0, 1.0}  # new area: painted afresh or kept, nothing between


def test_a_zoom_whose_edge_falls_mid_latent_keeps_the_latent_it_shares_with_the_source() -> None:
    canvas = _canvas("zoom 1.5", _source(128, 128))
    assert canvas.box == (21, 21, 106, 106)  # 85 px in the middle: its edges fall inside latents 2 and 13
    painted = canvas.latent_strengths(8) > 0
    assert painted[:2].all()  # the rows of latents above and below it, painted
    assert painted[-2:].all()
    assert not painted[2, 2:14].any()  # those holding its edge, kept
    assert not painted[13, 2:14].any()
    assert not painted[2:14, 2:14].any()


def test_a_strip_narrower_than_a_latent_is_painted_where_it_reaches() -> None:
    # Custom Zoom 1.1 leaves a 6 px ring: no latent lies wholly in it, so those it reaches are painted.
    canvas = _canvas("zoom 1.1", _source(128, 128))
    strengths = canvas.latent_strengths(8)
    area = (np.asarray(canvas.area) == 255).reshape(16, 8, 16, 8)
    assert not area.all(axis=(1, 3)).any()
    assert np.array_equal(strengths == 1.0, area.any(axis=(1, 3)))
    assert np.array_equal(strengths == 0.0, ~area.any(axis=(1, 3)))
    # A wide canvas: 9 px at the sides (one whole latent each) but 6 px above and below; the top and
    # bottom strips have no whole latent beside them except at the corners, so they are painted too.
    wide = _canvas("zoom 1.1", _source(192, 128))
    painted = wide.latent_strengths(8) > 0
    assert painted[:, 0].all()
    assert painted[:, -1].all()
    assert painted[0, 2:-2].all()
    assert painted[-1, 2:-2].all()
    assert not painted[1:-1, 2:-2].any()


def test_a_region_is_painted_softly_towards_what_stays() -> None:
    canvas = _canvas("region 5", _source(128, 128))  # cell 5: pixels 43–84 each way
    strength = np.asarray(canvas.strength, dtype=np.float64) / 255
    ramp = REGION_RAMP * 128  # 12.8 px
    assert strength[np.asarray(canvas.area) == 0].max() == 0.0
    row = strength[64]
    assert row[42] == 0.0
    assert row[43] == pytest.approx(1 / ramp, abs=0.01)  # its first pixel, barely
    assert row[48] == pytest.approx(6 / ramp, abs=0.01)
    assert row[43 + 13 : 85 - 13].min() == 1.0  # a ramp's width in: afresh
    assert np.all(np.diff(row[43:64]) >= 0)  # and rising all the way there
    latents = canvas.latent_strengths(8)
    assert latents[8, 5] == 0.0  # pixels 40–47: holds pixels of cell 4, kept
    assert latents[8, 6] == pytest.approx(6 / ramp, abs=0.01)  # 48–55: the least of its pixels
    assert latents[8, 8] == 1.0  # 64–71: the middle
    assert latents[8, 9] == pytest.approx(latents[8, 6], abs=0.01)  # 72–79: as far from cell 6
    everything = _canvas("region 1 2 3 4 5 6 7 8 9", _source(128, 128))
    assert np.asarray(everything.strength).min() == 255  # nothing stays: all painted afresh


def test_new_area_starts_from_the_sources_own_colours_not_black() -> None:
    source = Image.new("RGB", (64, 64), (200, 40, 90))
    canvas = _canvas("pan down", source)
    new = np.asarray(canvas.image, dtype=np.float64)[64:]
    assert np.abs(new - (200, 40, 90)).max() <= 1


# --- compositing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ("zoom 2", (64, 48)),
        ("pan left", (64, 48)),
        ("pan up", (64, 48)),
        ("square", (64, 24)),
        ("region 1 5 9", (96, 96)),
    ],
)
def test_composite_keeps_the_original_exactly_where_the_mask_is_zero(
    spec: str, size: tuple[int, int]
) -> None:
    canvas = _canvas(spec, _source(*size))
    painted = _source(*canvas.size, seed=9)
    result = np.asarray(composite(canvas, painted), dtype=np.int16)
    original = np.asarray(canvas.image, dtype=np.int16)
    alpha = _alpha(canvas)
    assert np.array_equal(result[alpha == 0], original[alpha == 0])
    far = np.asarray(painted, dtype=np.int16)
    # Well inside the painted area (beyond the correction at the border) it is the painting, its
    # colours moved by at most the colour match's limit and its detail untouched.
    deep = (alpha == 1) & (_distance_to_kept(alpha) > 2 * canvas.feather + 1)
    assert deep.any()
    assert np.abs(result[deep] - far[deep]).max() <= COLOUR_MATCH_LIMIT + 1
    assert np.corrcoef(result[deep].ravel(), far[deep].ravel())[0, 1] > 0.98


def _distance_to_kept(alpha: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(alpha < 1)
    grid_y, grid_x = np.mgrid[0 : alpha.shape[0], 0 : alpha.shape[1]]
    far = np.full(alpha.shape, np.inf)
    for y, x in zip(ys, xs, strict=True):
        far = np.minimum(far, np.maximum(np.abs(grid_y - y), np.abs(grid_x - x)))
    return far


def test_composite_of_a_painting_that_matches_gives_the_canvas_back() -> None:
    canvas = _canvas("zoom 1.5")
    assert composite(canvas, canvas.image).tobytes() == canvas.image.tobytes()


def test_composite_meets_the_original_across_the_feather_without_a_step() -> None:
    # The painting is the original shifted by 60 levels (as a VAE's colour offset would be): the
    # colour match takes its most (24 levels) off all of it, the correction at the border the rest
    # near the border, so no column jumps by much.
    source = Image.new("RGB", (64, 64), (100, 100, 100))
    canvas = _canvas("pan left", source)
    painted = Image.new("RGB", canvas.size, (160, 160, 160))
    row = np.asarray(composite(canvas, painted), dtype=np.float64)[32, :, 0]
    assert row[-1] == 100
    assert row[0] == 160 - COLOUR_MATCH_LIMIT
    steps = np.abs(np.diff(row))
    assert steps.max() <= 20  # a paste would jump 60 at once
    assert np.count_nonzero(steps) > canvas.feather  # spread wider than the feather alone


def test_composite_moves_a_duller_background_to_the_originals_colour_and_leaves_white_shapes_white() -> None:
    # The painted ring's green is duller than the source's (as the tiny model paints it): its
    # background takes the source's green, a white square in it stays white.
    source = Image.new("RGB", (128, 128), (60, 170, 90))
    canvas = _canvas("zoom 2", source)
    painting = np.full((128, 128, 3), (75, 160, 105), dtype=np.uint8)
    painting[4:20, 4:20] = 250
    result = np.asarray(composite(canvas, Image.fromarray(painting)), dtype=np.int16)
    assert np.abs(result[24, 8] - (60, 170, 90)).max() <= 1  # the ring, between square and middle
    assert np.abs(result[64, 2] - (60, 170, 90)).max() <= 1
    assert result[8:16, 8:16].min() >= 245  # the square, as painted (250; a shift would tint it)


def test_composite_moves_no_colour_where_nothing_is_kept() -> None:
    canvas = _canvas("region 1 2 3 4 5 6 7 8 9", _source(96, 96))
    painted = _source(96, 96, seed=4)
    assert composite(canvas, painted).tobytes() == painted.tobytes()


def test_a_large_canvas_is_matched_and_kept_the_same_way() -> None:
    # 1024 px: the colour matching is worked out on a coarser grid and resized back.
    source = Image.new("RGB", (1024, 768), (100, 100, 100))
    canvas = _canvas("pan right", source)
    assert (canvas.size, canvas.feather) == ((1536, 768), 48)
    result = np.asarray(composite(canvas, Image.new("RGB", canvas.size, (160, 160, 160))), dtype=np.float64)
    row = result[384, :, 0]
    assert np.all(row[: 1024 - canvas.feather] == 100)
    assert row[-1] == 160 - COLOUR_MATCH_LIMIT
    assert np.abs(np.diff(row)).max() <= 4  # 60 levels spread over some 50 px
