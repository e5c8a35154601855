"""FID and IS through torchmetrics: with Inception-v3 when its weights are on disk, else the shapes network.

The shapes network's average-pooled last convolutional layer (128 numbers) stands in for Inception's
pool3 features ("shapes-FID"),
and the 36 joint classes of its kind and colour heads (kind × shape colour) stand in for ImageNet's
1,000 ("shapes-IS", at most 36). Those figures measure these pictures against the shapes dataset
only; they are not comparable with anyone's Inception FID or IS.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import nn

from engine.evaluation._network import POOL_FEATURES, ShapesNet, load_network, to_tensor

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

__all__ = [
    "INCEPTION_URL",
    "NO_INCEPTION",
    "Fidelity",
    "Metrics",
    "MetricsError",
    "fidelity",
    "pick_metrics",
]

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
"""The FID Inception-v3 weights torch-fidelity (and so torchmetrics) uses, ported from TensorFlow's."""
NO_INCEPTION = (
    "No Inception-v3 weights on disk, so FID and IS are measured with the shapes network (shapes-FID, "
    "shapes-IS: not comparable with Inception FID); for Inception FID, download "
    f"{INCEPTION_URL} , `pip install torch-fidelity`, and set IMAGINE_INCEPTION_WEIGHTS to the file."
)
_BATCH = 100


class MetricsError(Exception):
    """The Inception metrics cannot be set up; the message says what to fix."""


class _ShapesFeatures(nn.Module):
    """The shapes network's pooled features, in the form torchmetrics' FID takes as `feature`.

    The pooled convolutional layer, not the 64-number layer the heads read: trained only to classify,
    that layer puts pictures unlike any class (noise) near the middle of the data, so random weights
    scored closer to the data than the trained `tiny` v1 did (1,608 against 1,757 at n = 200); the
    pooled layer orders them as they look (0.35 data, 25 tiny, 74 random on 48 pictures each).
    """

    num_features = POOL_FEATURES

    def __init__(self, network: ShapesNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network.pooled(pixels)


class _ShapesClassLogits(nn.Module):
    """Log-probabilities of the 36 (kind, shape colour) classes: the product of the two heads."""

    def __init__(self, network: ShapesNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        _, kind, colour = self.network(pixels)
        joint: torch.Tensor = kind.log_softmax(dim=1)[:, :, None] + colour.log_softmax(dim=1)[:, None, :]
        return joint.flatten(1)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Which networks FID and IS use, and the labels the report gives the figures."""

    fid_label: str
    is_label: str
    inception_weights: Path | None = None

    def build(self) -> tuple[FrechetInceptionDistance, InceptionScore]:
        """Fresh torchmetrics FID and IS objects (cheap for the shapes network)."""
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.inception import InceptionScore

        with warnings.catch_warnings():
            # IS warns that it keeps every picture's features; a few thousand rows of 36 numbers here.
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            if self.inception_weights is None:
                network = load_network()
                return (
                    FrechetInceptionDistance(feature=_ShapesFeatures(network)),
                    InceptionScore(feature=_ShapesClassLogits(network), splits=1),
                )
            from torchmetrics.image.fid import NoTrainInceptionV3

            weights = str(self.inception_weights)
            logits = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["logits_unbiased"],
                feature_extractor_weights_path=weights,
            )
            return (
                FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=weights),
                InceptionScore(feature=logits, splits=1),
            )


SHAPES_METRICS = Metrics("shapes-FID", "shapes-IS")


def pick_metrics(inception_weights: Path | None) -> Metrics:
    """Inception metrics when `inception_weights` names a file (torch-fidelity installed), else shapes."""
    if inception_weights is None:
        return SHAPES_METRICS
    if not inception_weights.is_file():
        raise MetricsError(
            f"IMAGINE_INCEPTION_WEIGHTS names {str(inception_weights)!r}, which is not a file; "
            f"download {INCEPTION_URL} there, or unset it to use the shapes network."
        )
    if importlib.util.find_spec("torch_fidelity") is None:
        raise MetricsError(
            "Inception FID needs the torch-fidelity package (and a torchvision that matches your torch): "
            "`pip install torch-fidelity`, or unset IMAGINE_INCEPTION_WEIGHTS to use the shapes network."
        )
    return Metrics("FID", "IS", inception_weights)


@dataclass(frozen=True, slots=True)
class Fidelity:
    fid: float
    inception_score: float


def _batches(images: Sequence[Image.Image]) -> list[torch.Tensor]:
    batches: list[torch.Tensor] = []
    by_size: dict[tuple[int, int], list[Image.Image]] = {}
    for image in images:
        by_size.setdefault(image.size, []).append(image)
    for group in by_size.values():
        batches.extend(to_tensor(group[i : i + _BATCH]) for i in range(0, len(group), _BATCH))
    return batches


def fidelity(
    real: Sequence[Image.Image], fake: Sequence[Image.Image], *, metrics: Metrics = SHAPES_METRICS
) -> Fidelity:
    """FID of `fake` against `real`, and the IS of `fake` (one split, seeded), with `metrics`' networks."""
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least two real and two generated pictures")
    fid, inception = metrics.build()
    with torch.no_grad():
        for batch in _batches(real):
            fid.update(batch, real=True)
        for batch in _batches(fake):
            fid.update(batch, real=False)
            inception.update(batch)
        fid_value = float(fid.compute())
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(0)  # IS shuffles before splitting: keep it reproducible
            # One split (the whole set estimates p(y) best), so the spread across splits is undefined.
            warnings.filterwarnings("ignore", message=r".*degrees of freedom is <= 0.*")
            score, _ = inception.compute()
    return Fidelity(max(0.0, fid_value), float(score))
