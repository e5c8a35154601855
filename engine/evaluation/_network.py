"""The shapes network: one small convolutional trunk, three classifier heads and a feature layer.

The heads read the background colour, the shape's kind and the shape's colour (prompt adherence);
the average-pooled last convolutional layer (128 numbers, as FID uses Inception's pool3) is what
shapes-FID compares, and the kind × colour heads give shapes-IS its 36 class probabilities. It takes
pictures of any aspect: each is resized so its short side is 64 px, keeping its proportions, and the
trunk ends in global pooling.
Trained here by `python -m engine.evaluation.train`; the weights ship beside this file.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine.evaluation._grammar import BACKGROUNDS, KINDS, SHAPE_COLOURS

__all__ = [
    "FEATURES",
    "POOL_FEATURES",
    "SHORT_SIDE",
    "WEIGHTS",
    "ShapesNet",
    "load_network",
    "to_tensor",
]

WEIGHTS: Path = Path(__file__).resolve().parent / "shapes_net.safetensors"
"""The trained weights (`python -m engine.evaluation.train` writes them, and `shapes_net.json` beside)."""
SHORT_SIDE = 64
"""Every picture is resized to this short side before the trunk."""
FEATURES = 64
"""Width of the feature layer the three heads read."""
POOL_FEATURES = 128
"""Width of the average-pooled last convolutional layer shapes-FID compares (Inception's pool3, in small)."""


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ShapesNet(nn.Module):
    """Pictures in (uint8 NCHW, or float in [0, 1]), logits of the three heads out."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            _block(3, 16, 1),
            _block(16, 32, 2),  # 32×32 at the native size
            _block(32, 64, 2),  # 16×16
            _block(64, 64, 1),
            _block(64, 128, 2),  # 8×8
        )
        # Average and max pooling: the background fills the picture, a small shape only a corner of it.
        self.embed = nn.Linear(256, FEATURES)
        self.background = nn.Linear(FEATURES, len(BACKGROUNDS))
        self.kind = nn.Linear(FEATURES, len(KINDS))
        self.colour = nn.Linear(FEATURES, len(SHAPE_COLOURS))

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """The last convolutional layer averaged over the picture: what shapes-FID compares."""
        return self.trunk(_normalise(pixels)).mean(dim=(2, 3))  # type: ignore[no-any-return]

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The feature layer (before its ReLU) for a batch of pictures of one size."""
        x = _normalise(pixels)
        x = self.trunk(x)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.embed(pooled)  # type: ignore[no-any-return]

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the background, kind and colour heads from `features`."""
        hidden = F.relu(features)
        return self.background(hidden), self.kind(hidden), self.colour(hidden)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.features(pixels))


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    x = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
    height, width = x.shape[-2:]
    scale = SHORT_SIDE / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size != (height, width):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    return x * 2.0 - 1.0


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """Pictures of one size as a uint8 NCHW tensor (the form torchmetrics passes on)."""
    sizes = {image.size for image in images}
    if len(sizes) != 1:
        raise ValueError(f"pictures in one batch must share a size; got {sorted(sizes)}")
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


@functools.cache
def load_network(path: Path = WEIGHTS) -> ShapesNet:
    """The trained network in eval mode, loaded once per process; frozen (no gradients)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(
            f"the shapes network's weights are missing at {path}; train them with "
            "`python -m engine.evaluation.train`."
        )
    network = ShapesNet()
    network.load_state_dict(load_file(str(path)))
    network.eval()
    network.requires_grad_(False)
    return network
