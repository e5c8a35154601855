"""The report of a run: a Markdown table (eval.md), a plot (eval.png) and a few grids per row (grids/)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine.evaluation._metrics import Metrics
from engine.evaluation._run import Row
from engine.images import make_grid
from engine.types import GRID_SIZE

__all__ = ["PLOT", "TABLE", "markdown_table", "plot", "write_report"]

TABLE = "eval.md"
PLOT = "eval.png"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value:.2f} s"


def _aspect(row: Row) -> str:
    return f"{row.aspect[0]}:{row.aspect[1]}"


def markdown_table(rows: Sequence[Row], metrics: Metrics) -> str:
    """The table `imaginebot eval` prints and writes: one line per model and aspect."""
    head = (
        f"| model | aspect | size | n | {metrics.fid_label} ↓ | {metrics.is_label} ↑ | background | shape "
        "| shape colour | all three | time / grid | time / image |"
    )
    lines = [head, "|" + " --- |" * 12]
    for row in rows:
        score = row.adherence
        lines.append(
            f"| {row.model} | {_aspect(row)} | {row.width}×{row.height} | {row.images} | {row.fid:.2f} "
            f"| {row.inception_score:.2f} | {_percent(score.background)} | {_percent(score.kind)} "
            f"| {_percent(score.colour)} | {_percent(score.all_three)} | {_seconds(row.seconds_per_grid)} "
            f"| {_seconds(row.seconds_per_image)} |"
        )
    return "\n".join(lines) + "\n"


def short_names(models: Sequence[str]) -> dict[str, str]:
    """Each model's name as the plot and file names show it: a folder by the end of its path, as few of
    its last parts as tell it apart from the run's other folders (two `…/model` folders are not one)."""
    distinct = list(dict.fromkeys(models))
    names = {model: model for model in distinct}
    folders = [model for model in distinct if Path(model).is_absolute()]
    for model in folders:
        parts = Path(model).parts
        for keep in range(1, len(parts) + 1):
            name = "/".join(parts[-keep:])
            others = ("/".join(Path(other).parts[-keep:]) for other in folders if other != model)
            if name not in others:
                break
        names[model] = name
    return names


def _slug(row: Row, names: dict[str, str]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", names[row.model]).strip("-") or "model"
    return f"{name}-{row.aspect[0]}x{row.aspect[1]}"


_INK = (30, 30, 30)
_GRID_LINE = (215, 215, 215)
_HEADS = (("background", (70, 110, 200)), ("shape", (230, 150, 40)), ("shape colour", (60, 160, 90)))


def plot(rows: Sequence[Row], metrics: Metrics) -> Image.Image:
    """Two panels of horizontal bars, one line per row: FID (lower is better), then the three accuracies."""
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    names = short_names([row.model for row in rows])
    label_w, panel_w, gap, line_h, top = 190, 330, 40, 48, 56
    width = label_w + 2 * panel_w + gap + 30
    height = top + line_h * len(rows) + 50
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    fid_x, acc_x = label_w, label_w + panel_w + gap
    pen.text((fid_x, 12), f"{metrics.fid_label} (lower is better)", fill=_INK, font=font)
    pen.text((acc_x, 12), "prompt adherence (accuracy)", fill=_INK, font=font)
    worst = max((row.fid for row in rows), default=1.0) or 1.0
    bottom = top + line_h * len(rows)
    for tick in range(0, 11, 2):  # 0 %, 20 %, … 100 % guides under the accuracy bars
        x = acc_x + panel_w * tick / 10
        pen.line((x, top - 4, x, bottom), fill=_GRID_LINE)
        pen.text((x - 10, bottom + 4), f"{tick * 10}%", fill=_INK, font=small)
    pen.text((fid_x, bottom + 4), "0", fill=_INK, font=small)
    pen.text((fid_x + panel_w - 40, bottom + 4), f"{worst:.3g}", fill=_INK, font=small)
    for index, row in enumerate(rows):
        y = top + index * line_h
        pen.text((10, y + 8), names[row.model], fill=_INK, font=font)
        pen.text((10, y + 26), f"{_aspect(row)}  ({row.width}x{row.height})", fill=_INK, font=small)
        bar = panel_w * row.fid / worst
        pen.rectangle((fid_x, y + 10, fid_x + max(1.0, bar), y + line_h - 12), fill=(120, 120, 120))
        value = f"{row.fid:.2f}"
        if bar > panel_w - 50:  # no room after the bar: write the value inside its end, in white
            pen.text(
                (fid_x + bar - 6 - pen.textlength(value, font=small), y + 14), value, fill="white", font=small
            )
        else:
            pen.text((fid_x + bar + 4, y + 14), value, fill=_INK, font=small)
        values = (row.adherence.background, row.adherence.kind, row.adherence.colour)
        for head, ((_, colour), share) in enumerate(zip(_HEADS, values, strict=True)):
            y0 = y + 6 + head * 12
            if share is not None:
                pen.rectangle((acc_x, y0, acc_x + max(1.0, panel_w * share), y0 + 9), fill=colour)
    legend_x = acc_x
    for name, colour in _HEADS:
        pen.rectangle((legend_x, 34, legend_x + 10, 44), fill=colour)
        pen.text((legend_x + 14, 31), name, fill=_INK, font=small)
        legend_x += 24 + int(pen.textlength(name, font=small))
    return image


def write_report(rows: Sequence[Row], metrics: Metrics, out: Path, *, header: str) -> Path:
    """Write eval.md (header, table, sample grids), eval.png and grids/ under `out`; returns eval.md."""
    grids = out / "grids"
    grids.mkdir(parents=True, exist_ok=True)
    names = short_names([row.model for row in rows])
    plot(rows, metrics).save(out / PLOT)
    lines = [header.rstrip(), "", markdown_table(rows, metrics), f"![the table as bars]({PLOT})", ""]
    lines.append("## Sample grids (the first grids of each row)")
    lines.append("")
    for row in rows:
        for number, sample in enumerate(row.samples, start=1):
            if len(sample.images) != GRID_SIZE:
                continue
            name = f"{_slug(row, names)}-{number}.png"
            make_grid(sample.images).save(grids / name)
            lines.append(f"- {row.model} {_aspect(row)}, “{sample.prompt}”: ![{name}](grids/{name})")
    table = out / TABLE
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table
