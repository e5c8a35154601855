"""Measuring generators on the shapes prompts: prompt adherence, FID and IS (`imaginebot eval`).

    from engine.evaluation import adherence, shapes_prompts
    prompts = shapes_prompts(100, seed=0)       # "a red circle on a blue background", ...
    score = adherence(images, prompts)          # one prompt per picture
    score.background, score.kind, score.colour  # accuracy of each attribute, 0..1

A small network trained here (`python -m engine.evaluation.train`, weights beside this file) reads the
background colour, the shape's kind and the shape's colour of a picture of any aspect; its feature
layer gives shapes-FID and its kind × colour heads shapes-IS when Inception-v3 weights are not on disk.
See docs/evaluation.md.
"""

from __future__ import annotations

from engine.evaluation._adherence import Adherence, adherence, classify
from engine.evaluation._data import DATA, DataBackend
from engine.evaluation._grammar import (
    BACKGROUNDS,
    KINDS,
    SHAPE_COLOURS,
    Labels,
    draw_labels,
    draw_scene,
    parse_prompt,
    prompt_for,
    shapes_prompts,
)
from engine.evaluation._metrics import (
    INCEPTION_URL,
    NO_INCEPTION,
    Fidelity,
    Metrics,
    MetricsError,
    fidelity,
    pick_metrics,
)
from engine.evaluation._network import WEIGHTS, ShapesNet, load_network
from engine.evaluation._report import markdown_table, plot, write_report
from engine.evaluation._run import Row, Sample, evaluate, load_model_backend, reference_images

__all__ = [
    "BACKGROUNDS",
    "DATA",
    "INCEPTION_URL",
    "KINDS",
    "NO_INCEPTION",
    "SHAPE_COLOURS",
    "WEIGHTS",
    "Adherence",
    "DataBackend",
    "Fidelity",
    "Labels",
    "Metrics",
    "MetricsError",
    "Row",
    "Sample",
    "ShapesNet",
    "adherence",
    "classify",
    "draw_labels",
    "draw_scene",
    "evaluate",
    "fidelity",
    "load_model_backend",
    "load_network",
    "markdown_table",
    "parse_prompt",
    "pick_metrics",
    "plot",
    "prompt_for",
    "reference_images",
    "shapes_prompts",
    "write_report",
]
