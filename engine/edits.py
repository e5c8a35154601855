"""The editing tools' geometry: Zoom Out, Pan, Make Square and Vary (Region) as a canvas and a mask.

`parse_edit` reads `GenerationRequest.edit`; `canvas_for` lays the source on the canvas to paint (new
area pre-filled with blurred, mirrored source colours) with how strongly each latent is painted
(`Canvas.latent_strengths`: new area afresh, a region's cells softly towards what stays) and a
feathered mask (255 = paint); after the inpainting pipeline has painted it, `composite` matches the
painting's colours to the original near the border, puts the original pixels back wherever the mask
is 0 and blends across the feather. Plain Pillow/numpy, so every size and mask is tested without a model.

Where the feather lies: for new area (zoom, pan, square) the painted border reaches `feather` pixels
into the source and fades out there, so the new area joins the source smoothly; for a region it lies
inside the chosen cells, so everything outside them is exactly the original.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from engine.errors import GenerationError

__all__ = [
    "CANNOT_PAINT",
    "COLOUR_MATCH_LIMIT",
    "FEATHER_FRACTION",
    "MAX_ZOOM",
    "NEW_AREA_STRENGTH",
    "REGION_GRID",
    "REGION_RAMP",
    "REGION_STRENGTH",
    "Box",
    "Canvas",
    "Direction",
    "Edit",
    "EditKind",
    "canvas_for",
    "composite",
    "edited_size",
    "parse_edit",
]

CANNOT_PAINT = (
    "This engine cannot paint new areas (it has no inpainting), so Zoom Out, Pan, Make Square and "
    "Vary (Region) don't work with it; Vary and Upscale still do."
)
NEW_AREA_STRENGTH = 1.0
"""Inpainting strength of new canvas area (zoom, pan, square): painted from pure noise, so the pre-fill
only matters to a pipeline run below 1. Measured on the tiny model: 0.9 would start from the pre-fill's
colours and lower the seams a little (pan up 1.35 → 1.07, zoom 2x 1.39 → 1.29 times the typical
gradient) but make the four fills much more alike (zoom 2x: mean difference 45 → 29 levels)."""
REGION_STRENGTH = 1.0
"""Inpainting strength of Vary (Region): the middle of the cells is painted afresh, from pure noise;
towards what stays, the latents are painted for less and less of the run (`REGION_RAMP`)."""
REGION_RAMP = 1 / 10
"""Vary (Region) paints the chosen cells with a soft edge (`Canvas.strength`): a pixel this share of the
image's short side or more inside the cells is painted afresh, one nearer what stays is painted for a
share of the steps as large as its distance over this width, and follows the original (re-noised) before
that. A shape that crosses a cell's edge is then carried on into the cell instead of cut off.
Measured on the tiny model (U1 and U2 upscaled, region 1 5 9): the seams 1.41 times the image's typical
step with every latent of the cells painted from noise, 0.78 with this ramp (in a probe that let each
latent go a step sooner: 0.74 at 1/8, 0.80 at 1/10, 0.86 at 1/12); a cell then differs from what was
there by 14 levels on average rather than 20 (10 at 1/8)."""
MAX_ZOOM = 2.0
"""`zoom F` takes F above 1 and at most 2 (Midjourney's Zoom Out 2x, 1.5x and Custom Zoom)."""
REGION_GRID = 3
"""Vary (Region) picks cells of a 3x3 grid over the image, numbered 1–9 row by row from the top left."""
FEATHER_FRACTION = 1 / 16
"""The feather is this share of the source's short side as placed (at least 2 px): 4 px for a 64 px
source, 32 px at 512, 2 px for a 64 px source shrunk 2x by a zoom (a wider one would eat into what
a zoom must keep: its middle then correlates 0.94 rather than 0.97 with the source)."""
_CORRECTION_RADIUS = 0.5
"""`composite` shifts the painting's colour towards the original's within this many feathers of the
border (a blur radius; see there). Measured on the tiny model: half a feather gave the smallest seams
(pan left 1.34x the image's typical gradient; 1.45x at one feather, 1.49x at a quarter, 2.5x with none)."""
_MATCH_BAND = 2
"""`composite` compares colours within this many feathers on each side of the border."""
_MATCH_SPREAD = 40.0
"""How close (levels, RGB distance; a Gaussian's sigma) a painted pixel's colour must be to the
painting's main colour at the border to take the colour match in full: the background moves, a
white shape in it stays white."""
COLOUR_MATCH_LIMIT = 24.0
"""The colour match moves a channel by at most this many levels: it mends a cast, it does not
repaint what the model chose to put next to the original (grass beside snow stays grass)."""
_PREFILL_BLUR = 1 / 8
"""Blur radius of the pre-filled new area, as a share of the canvas's short side."""

Box = tuple[int, int, int, int]  # left, top, right, bottom


class EditKind(enum.StrEnum):
    ZOOM = "zoom"
    PAN = "pan"
    SQUARE = "square"
    REGION = "region"


class Direction(enum.StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Edit:
    """One parsed edit; only the fields of its kind are set."""

    kind: EditKind
    factor: float = 1.0
    """Zoom: how many times smaller the image becomes on its own-size canvas."""
    direction: Direction | None = None
    """Pan: the side the canvas grows on."""
    cells: tuple[int, ...] = ()
    """Region: the chosen cells, sorted, each once."""

    @property
    def strength(self) -> float:
        """The inpainting strength this edit paints with."""
        return REGION_STRENGTH if self.kind is EditKind.REGION else NEW_AREA_STRENGTH

    @property
    def label(self) -> str:
        """How the recipe names the operation: `zoom 2x`, `pan left`, `make square`, `vary region 1,5,9`."""
        if self.kind is EditKind.ZOOM:
            return f"zoom {self.factor:g}x"
        if self.kind is EditKind.PAN:
            return f"pan {self.direction}"
        if self.kind is EditKind.SQUARE:
            return "make square"
        return "vary region " + ",".join(map(str, self.cells))


_FORMS = "`zoom 2`, `pan left`, `square` or `region 1 5 9`"


def parse_edit(spec: str) -> Edit:
    """Read `GenerationRequest.edit`; a malformed spec is a `GenerationError` saying what is expected."""
    words = spec.split()
    if not words:
        raise GenerationError(f"An edit job must say what to paint, like {_FORMS}; it says nothing.")
    head, args = words[0].lower(), words[1:]
    if head == EditKind.ZOOM:
        return _parse_zoom(args)
    if head == EditKind.PAN:
        names = [d.value for d in Direction]
        if len(args) != 1 or args[0].lower() not in names:
            raise GenerationError(f"`pan` takes one of {', '.join(names)}, like `pan left`; got {spec!r}.")
        return Edit(EditKind.PAN, direction=Direction(args[0].lower()))
    if head == EditKind.SQUARE:
        if args:
            raise GenerationError(f"`square` takes nothing after it; got {spec!r}.")
        return Edit(EditKind.SQUARE)
    if head == EditKind.REGION:
        return _parse_region(args, spec)
    raise GenerationError(f"An edit is one of {_FORMS}; got {spec!r}.")


def _parse_zoom(args: list[str]) -> Edit:
    try:
        (factor,) = (float(arg) for arg in args)
    except ValueError:
        factor = float("nan")
    if not 1.0 < factor <= MAX_ZOOM:  # also refuses nan
        got = " ".join(args) or "nothing"
        raise GenerationError(
            f"`zoom` takes a factor above 1 and at most {MAX_ZOOM:g}, like `zoom 1.5`; got {got}."
        )
    return Edit(EditKind.ZOOM, factor=factor)


def _parse_region(args: list[str], spec: str) -> Edit:
    last = REGION_GRID * REGION_GRID
    words = [part for arg in args for part in arg.split(",") if part]
    if not words or not all(word.isdigit() and 1 <= int(word) <= last for word in words):
        raise GenerationError(
            f"`region` takes cells 1–{last} of a 3x3 grid (row by row from the top left), "
            f"like `region 1 2 5`; got {spec!r}."
        )
    return Edit(EditKind.REGION, cells=tuple(sorted({int(word) for word in words})))


# --- the canvas ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Canvas:
    """What the inpainting pipeline paints: `image` (the source in place, new area pre-filled), `area`
    (what the edit paints, mode "L", 255 = paint), `strength` (how strongly each pixel of the area is
    painted, mode "L": 255 = afresh from pure noise; the area itself for new area, a ramp up from the
    kept cells for a region), `mask` (the area feathered: what `composite` blends by) and `box` (where
    the source sits)."""

    image: Image.Image
    area: Image.Image
    strength: Image.Image
    mask: Image.Image
    box: Box
    feather: int

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def latent_strengths(self, cell: int) -> np.ndarray:
        """`strength` per `cell`×`cell` block (one latent each), 0–1: the least of its pixels', so
        that a latent holding a pixel the edit keeps is kept (the inpainting pipeline re-noises and
        blends it back after every step; `engine.backends._soft_mask` paints a latent of strength s
        for the last s share of the steps).

        A latent the area only reaches into thus starts from the canvas's own pixels (for new area,
        a few pixels of the pre-fill, the source's blurred mirror, next to the source). Measured on the
        tiny model: a Zoom Out 1.5x of a 128 px image, whose edge falls mid-latent, had seams 1.44
        times the image's typical step (and its new area a greyer green than the source) with those
        latents painted from noise, 0.51 with them kept. Where the area is narrower than a latent, so
        that a latent it reaches has no painted latent beside it, that latent takes the most of its
        pixels' strength instead (a thin strip would otherwise keep only the pre-fill). `composite`
        trims the painting back to `mask` afterwards."""
        values = np.asarray(self.strength, dtype=np.float32) / 255.0
        height, width = values.shape
        rows, cols = -(-height // cell), -(-width // cell)
        shape = (rows, cell, cols, cell)
        pad = ((0, rows * cell - height), (0, cols * cell - width))
        least = np.pad(values, pad, constant_values=1.0).reshape(shape).min(axis=(1, 3))
        most = np.pad(values, pad, constant_values=0.0).reshape(shape).max(axis=(1, 3))
        strip = (most > 0) & ~_near(least > 0, 1)
        strengths: np.ndarray = np.where(strip, most, least)
        return strengths


def _up(length: int, multiple: int) -> int:
    return max(multiple, -(-length // multiple) * multiple)


def edited_size(size: tuple[int, int], edit: Edit, *, multiple: int, max_side: int | None) -> tuple[int, int]:
    """The size of the canvas `canvas_for` paints for a source of `size`: what the edit's images will
    measure. Raises `GenerationError` as `canvas_for` would (over `max_side`, nothing to add)."""
    return _layout(size, edit, multiple, max_side)[0]


def _layout(
    size: tuple[int, int], edit: Edit, multiple: int, max_side: int | None
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(canvas size, the source's size on it, where its top left sits)."""
    width, height = size
    if edit.kind is EditKind.REGION:
        canvas, placed, at = (_up(width, multiple), _up(height, multiple)), size, (0, 0)
    elif edit.kind is EditKind.ZOOM:
        canvas = (_up(width, multiple), _up(height, multiple))
        placed = (max(1, round(width / edit.factor)), max(1, round(height / edit.factor)))
        at = ((canvas[0] - placed[0]) // 2, (canvas[1] - placed[1]) // 2)
    elif edit.kind is EditKind.SQUARE:
        if width == height and width % multiple == 0:
            raise GenerationError(
                f"This image is already square ({width}×{height}); Make Square has nothing to add."
            )
        side = _up(max(width, height), multiple)
        canvas, placed, at = (side, side), size, ((side - width) // 2, (side - height) // 2)
    else:
        (canvas, at), placed = _pan_size(width, height, edit, multiple, max_side), size
    _check_side(edit, canvas, max_side)
    return canvas, placed, at


def canvas_for(source: Image.Image, edit: Edit, *, multiple: int, max_side: int | None) -> Canvas:
    """The canvas to paint for `edit` of `source`; sides are multiples of `multiple`, at most `max_side`.

    Zoom F: a canvas of the source's size, the source shrunk F times in its middle. Pan: the canvas
    grows by half the source's side that way (less where `max_side` stops it). Square: the short side
    grows to the long one, half on each end. Region: the source itself, the chosen cells to repaint.
    """
    source = source.convert("RGB")
    size, placed, at = _layout(source.size, edit, multiple, max_side)
    if edit.kind is EditKind.REGION:
        return _region_canvas(source, size, edit.cells)
    if placed != source.size:
        source = source.resize(placed, Image.Resampling.LANCZOS)
    return _border_canvas(source, size, at)


def _pan_size(
    width: int, height: int, edit: Edit, multiple: int, max_side: int | None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The canvas size of a pan and where the source's top left sits on it."""
    sideways = edit.direction in (Direction.LEFT, Direction.RIGHT)
    along, across = (width, height) if sideways else (height, width)
    grown = _up(along + max(multiple, along // 2 // multiple * multiple), multiple)
    if max_side is not None:
        grown = min(grown, max_side // multiple * multiple)
    if grown <= along:
        raise GenerationError(
            f"This image is already at the largest side this server makes ({max_side} px), "
            f"so it can't pan {edit.direction}; pan the other way or make a new image."
        )
    across = _up(across, multiple)
    if sideways:  # the source keeps to the side it came from, centred the other way
        size = (grown, across)
        return size, (grown - width if edit.direction is Direction.LEFT else 0, (across - height) // 2)
    size = (across, grown)
    return size, ((across - width) // 2, grown - height if edit.direction is Direction.UP else 0)


def _check_side(edit: Edit, size: tuple[int, int], max_side: int | None) -> None:
    if max_side is not None and max(size) > max_side:
        raise GenerationError(
            f"{edit.label.capitalize()} would make a {size[0]}×{size[1]} image, larger than the "
            f"largest side this server makes ({max_side} px)."
        )


def _feather_for(size: tuple[int, int]) -> int:
    return max(2, round(min(size) * FEATHER_FRACTION))


def _border_canvas(source: Image.Image, size: tuple[int, int], at: tuple[int, int]) -> Canvas:
    """New area all around a placed source: pre-filled with its mirrored colours, blurred."""
    width, height = size
    left, top = at
    box = (left, top, left + source.width, top + source.height)
    pixels = np.asarray(source)
    mirrored = np.pad(pixels, ((top, height - box[3]), (left, width - box[2]), (0, 0)), mode="symmetric")
    radius = max(1, round(min(size) * _PREFILL_BLUR))
    image = Image.fromarray(mirrored).filter(ImageFilter.GaussianBlur(radius))
    image.paste(source, box[:2])
    new = _outside(box, size)
    feather = _feather_for(source.size)
    # The ramp lies in the source: 1 on its first pixel, 0 from `feather` pixels in.
    alpha = np.clip(1.0 - (_distance(new, size) - 1.0) / feather, 0.0, 1.0)
    area = _area(new, size)
    return Canvas(image, area, area, _mask(alpha), box, feather)


def _region_canvas(source: Image.Image, size: tuple[int, int], cells: tuple[int, ...]) -> Canvas:
    """The source as it is (padded up to `size`), the chosen cells of its 3x3 grid to repaint."""
    width, height = source.size
    image = Image.fromarray(
        np.pad(np.asarray(source), ((0, size[1] - height), (0, size[0] - width), (0, 0)), mode="edge")
    )
    xs = [round(width * i / REGION_GRID) for i in range(REGION_GRID + 1)]
    ys = [round(height * i / REGION_GRID) for i in range(REGION_GRID + 1)]
    grid = {
        row * REGION_GRID + col + 1: (xs[col], ys[row], xs[col + 1], ys[row + 1])
        for row in range(REGION_GRID)
        for col in range(REGION_GRID)
    }
    pad = _outside((0, 0, width, height), size)  # rounding up to the multiple: painted too
    paint = [grid[cell] for cell in cells] + pad
    kept = [box for cell, box in grid.items() if cell not in cells]
    feather = _feather_for(source.size)
    inside = _distance(kept, size)  # 1 on the cells' first pixel
    # The feather lies in the cells: 0 on their first pixel, 1 from `feather` pixels in.
    alpha = np.clip((inside - 1.0) / feather, 0.0, 1.0)
    strength = np.clip(inside / max(1.0, REGION_RAMP * min(width, height)), 0.0, 1.0)
    return Canvas(image, _area(paint, size), _mask(strength), _mask(alpha), (0, 0, width, height), feather)


def _outside(box: Box, size: tuple[int, int]) -> list[Box]:
    """The canvas around `box` as up to four rectangles (above, below, left, right)."""
    width, height = size
    left, top, right, bottom = box
    strips = [
        (0, 0, width, top),
        (0, bottom, width, height),
        (0, top, left, bottom),
        (right, top, width, bottom),
    ]
    return [strip for strip in strips if strip[0] < strip[2] and strip[1] < strip[3]]


def _distance(rects: list[Box], size: tuple[int, int]) -> np.ndarray:
    """Chessboard distance of every pixel to the nearest of `rects`: 0 inside one, 1 next to it; a
    large number when there are none."""
    width, height = size
    xs, ys = np.arange(width), np.arange(height)
    best = np.full((height, width), float(width + height), dtype=np.float32)
    for left, top, right, bottom in rects:
        dx = np.maximum(np.maximum(left - xs, xs - (right - 1)), 0)
        dy = np.maximum(np.maximum(top - ys, ys - (bottom - 1)), 0)
        best = np.minimum(best, np.maximum(dy[:, None], dx[None, :]))
    return best


def _area(rects: list[Box], size: tuple[int, int]) -> Image.Image:
    area = Image.new("L", size, 0)
    for box in rects:
        area.paste(255, box)
    return area


def _mask(alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(alpha * 255).astype(np.uint8))


def composite(canvas: Canvas, painted: Image.Image) -> Image.Image:
    """The painted image with the canvas's own pixels put back by the mask: exactly the original
    where the mask is 0, the painting where it is 255, blended across the feather.

    Two corrections come first. The painting's main colour at the border is moved to the original's
    (`_colour_match`): an inpainting pipeline over a model that is not an inpainting one paints its
    new area in a duller colour than the source (measured on the tiny model: a Zoom Out 2x of a
    128 px image, the two sides of the border 9.4 levels apart, a frame around the middle that the
    eye sees at once; 1.9 after). Then the painting is shifted towards the original near the
    border by the smoothed difference between them over the kept pixels: the pipeline drew its new
    area to match the source as its VAE decodes it, which differs from the original by a few levels
    of colour, and that difference would otherwise show as a seam right where the original comes back.
    """
    if painted.size != canvas.size:
        painted = painted.resize(canvas.size, Image.Resampling.LANCZOS)
    alpha = np.asarray(canvas.mask, dtype=np.float32)[..., None] / 255.0
    new = np.asarray(painted.convert("RGB"), dtype=np.float32)
    old = np.asarray(canvas.image, dtype=np.float32)
    new = new + _colour_match(old, new, alpha[..., 0], canvas.feather)
    new = new + _border_correction(old, new, alpha, max(1, round(_CORRECTION_RADIUS * canvas.feather)))
    return Image.fromarray(np.clip(np.round(new * alpha + old * (1.0 - alpha)), 0, 255).astype(np.uint8))


def _colour_match(old: np.ndarray, new: np.ndarray, alpha: np.ndarray, feather: int) -> np.ndarray:
    """What to add to the painting so that its main colour next to the border (the median of the painted
    pixels within `_MATCH_BAND` feathers of the original) becomes the original's there, given in full
    to painted pixels of about that colour and fading with their distance from it (`_MATCH_SPREAD`),
    at most `COLOUR_MATCH_LIMIT` levels a channel. Nothing where either side of the border is missing."""
    painted, kept = alpha >= 1.0, alpha <= 0.0
    band = _MATCH_BAND * feather
    near_painted = kept & _near(painted, band)
    near_kept = painted & _near(kept, band)
    if not near_painted.any() or not near_kept.any():
        return np.zeros_like(new)
    main = _median(new, near_kept)
    shift = np.clip(_median(old, near_painted) - main, -COLOUR_MATCH_LIMIT, COLOUR_MATCH_LIMIT)
    if np.abs(shift).max() < 0.5:  # nothing to mend (a model that inpaints in the source's colours)
        return np.zeros_like(new)
    result = np.zeros_like(new)
    rows, cols = np.nonzero((alpha > 0).any(axis=1))[0], np.nonzero((alpha > 0).any(axis=0))[0]
    shown = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # where the painting shows at all
    away = new[shown] - main
    closeness = np.exp(np.einsum("ijk,ijk->ij", away, away) / (-2 * _MATCH_SPREAD**2))
    result[shown] = closeness[..., None] * shift.astype(np.float32)
    return result


def _near(where: np.ndarray, reach: int) -> np.ndarray:
    """Pixels within `reach` (chessboard) of a True pixel of `where`: exactly for a reach under 8, else
    worked out on a grid a few times coarser (a band a block wider at most; a 2048 px canvas takes
    milliseconds)."""
    step = max(1, reach // 8)
    coarse = _shrink(where.astype(np.float32), step) > 0
    grown = _blur(coarse.astype(np.float32), -(-reach // step), passes=1) > 1e-6
    full = np.repeat(np.repeat(grown, step, axis=0), step, axis=1)
    return np.asarray(full[: where.shape[0], : where.shape[1]])


def _median(pixels: np.ndarray, where: np.ndarray, most: int = 20_000) -> np.ndarray:
    """Per-channel median of `pixels` (height × width × channels) where `where` is True, from an even
    sample of at most `most` of them."""
    chosen = np.flatnonzero(where)
    chosen = chosen[:: max(1, len(chosen) // most)]
    median: np.ndarray = np.median(pixels.reshape(-1, pixels.shape[-1])[chosen], axis=0)
    return median


def _border_correction(old: np.ndarray, new: np.ndarray, alpha: np.ndarray, radius: int) -> np.ndarray:
    """original − painting over the pixels that are original (alpha < 1), spread by a normalised blur
    of `radius`, fading out about two radii into the painted area.

    Being smooth, it is worked out on a grid `radius / 2` times coarser and resized back (a 2048 px
    canvas takes milliseconds rather than seconds)."""
    step = max(1, radius // 2)
    known = (alpha < 1.0).astype(np.float32)
    weight = _blur(_shrink(known, step), max(1, round(radius / step)))
    spread = _blur(_shrink((old - new) * known, step), max(1, round(radius / step)))
    low = spread / np.maximum(weight, 1e-6) * np.clip(2.0 * weight, 0.0, 1.0)
    return _grow(low, step, old.shape[:2])


def _shrink(a: np.ndarray, step: int) -> np.ndarray:
    """Means over `step`×`step` blocks (edges extended to whole blocks)."""
    if step == 1:
        return a
    height, width = a.shape[:2]
    rows, cols = -(-height // step), -(-width // step)
    pad = [(0, rows * step - height), (0, cols * step - width)] + [(0, 0)] * (a.ndim - 2)
    blocks = np.pad(a, pad, mode="edge").reshape(rows, step, cols, step, *a.shape[2:])
    shrunk: np.ndarray = blocks.mean(axis=(1, 3))
    return shrunk


def _grow(a: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """`_shrink` undone by bilinear resampling, cropped to `shape` (height, width)."""
    if step == 1:
        return a
    size = (a.shape[1] * step, a.shape[0] * step)
    planes = [
        np.asarray(Image.fromarray(a[..., c].astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
        for c in range(a.shape[2])
    ]
    return np.stack(planes, axis=-1)[: shape[0], : shape[1]]


def _blur(a: np.ndarray, radius: int, passes: int = 3) -> np.ndarray:
    """Repeated box blur over the first two axes (about a Gaussian of sigma ≈ radius), edges extended."""
    for _ in range(passes):
        for axis in (0, 1):
            pad = [(0, 0)] * a.ndim
            pad[axis] = (radius + 1, radius)
            sums = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
            length = a.shape[axis]
            upper = np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + length), axis=axis)
            lower = np.take(sums, np.arange(length), axis=axis)
            a = ((upper - lower) / (2 * radius + 1)).astype(np.float32)
    return a
