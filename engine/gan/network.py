"""The networks of the text-conditioned GAN: a word-level text encoder, the generator and the discriminator.

The generator is fully convolutional from a z-map (`z_channels` × h × w, h = w = 4 at the native 64×64):
each of its blocks doubles the side, so a wider z-map makes a wider picture (6×4 → 96×64). Two
coordinate channels beside z let it place things "on the left" on any canvas. The text embedding
steers every block through feature-wise modulation after a GroupNorm (per image, so a cell never
depends on the other cells of its batch). The discriminator (only needed for training) is a
spectral-norm projection discriminator with auxiliary heads that read the background colour and the
(shape, colour) pairs of real images.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

__all__ = [
    "PAD",
    "UNKNOWN",
    "Discriminator",
    "Encoder",
    "GanConfig",
    "Generator",
    "TextEncoder",
    "tokenize",
    "z_map_size",
]

PAD = 0
UNKNOWN = 1
_SPECIALS = ("<pad>", "<unk>")
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class GanConfig:
    """The generator's shape; written as `config.json` beside its weights (see docs/gan-model.md)."""

    vocabulary: tuple[str, ...]
    """Words with their own embedding, in index order after `<pad>` and `<unk>`."""
    max_words: int = 24
    word_dim: int = 64
    text_dim: int = 128
    z_channels: int = 16
    channels: tuple[int, ...] = (128, 128, 64, 32, 16)
    """Feature channels at the z-map's side and after each doubling (the last is the picture's)."""
    base: int = 4
    """The z-map's short side; the native picture's side is base × 2^(len(channels) - 1)."""
    groups: int = 8
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else the folder's author wants kept (ignored by the loader)."""

    @property
    def upsampling(self) -> int:
        return int(2 ** (len(self.channels) - 1))

    @property
    def native(self) -> int:
        return self.base * self.upsampling

    @property
    def tokens(self) -> int:
        return len(_SPECIALS) + len(self.vocabulary)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["vocabulary"] = list(self.vocabulary)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GanConfig:
        """Build from parsed JSON; raises ValueError with what is wrong."""
        known = {
            "vocabulary",
            "max_words",
            "word_dim",
            "text_dim",
            "z_channels",
            "channels",
            "base",
            "groups",
        }
        unknown = sorted(set(data) - known - {"extra", "format", "version"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        vocabulary = data.get("vocabulary")
        if not isinstance(vocabulary, list) or not all(isinstance(w, str) and w for w in vocabulary):
            raise ValueError("`vocabulary` must be a list of words")
        values: dict[str, Any] = {"vocabulary": tuple(vocabulary)}
        for key in ("max_words", "word_dim", "text_dim", "z_channels", "base", "groups"):
            if key in data:
                if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
                    raise ValueError(f"`{key}` must be a positive whole number")
                values[key] = data[key]
        if "channels" in data:
            channels = data["channels"]
            if (
                not isinstance(channels, list)
                or len(channels) < 2
                or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)
            ):
                raise ValueError("`channels` must be a list of at least two positive whole numbers")
            values["channels"] = tuple(channels)
        config = cls(**values, extra=dict(data.get("extra") or {}))
        if any(c % config.groups for c in config.channels):
            raise ValueError(f"every entry of `channels` must be a multiple of `groups` ({config.groups})")
        if config.text_dim % 2:
            raise ValueError("`text_dim` must be even")
        return config


def tokenize(texts: Sequence[str], config: GanConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids (batch × words, padded) and lengths; an unknown word is `<unk>`, so is an empty text."""
    index = {word: i + len(_SPECIALS) for i, word in enumerate(config.vocabulary)}
    rows = []
    for text in texts:
        ids = [index.get(word, UNKNOWN) for word in _WORD.findall(text.lower())][: config.max_words]
        rows.append(ids or [UNKNOWN])
    longest = max(len(row) for row in rows)
    out = torch.full((len(rows), longest), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out, torch.tensor([len(row) for row in rows])


def z_map_size(aspect: tuple[int, int], config: GanConfig) -> tuple[int, int]:
    """(height, width) of the z-map for `aspect` = (w, h): short side `base`, long side in proportion."""
    w, h = aspect
    if w >= h:
        return config.base, max(config.base, round(config.base * w / h))
    return max(config.base, round(config.base * h / w)), config.base


class TextEncoder(nn.Module):
    """Word embeddings → bidirectional GRU → MLP, so word order counts ("red circle on blue" ≠ "blue ...")."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.words = nn.Embedding(config.tokens, config.word_dim, padding_idx=PAD)
        self.gru = nn.GRU(config.word_dim, config.text_dim // 2, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(
            nn.Linear(config.text_dim * 2, config.text_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(config.text_dim, config.text_dim),
        )

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.words(ids)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        states, last = self.gru(packed)
        unpacked, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        mask = (ids != PAD).unsqueeze(-1).to(unpacked.dtype)
        mean = (unpacked * mask).sum(1) / mask.sum(1).clamp(min=1)
        final = torch.cat([last[0], last[1]], dim=1)
        out: torch.Tensor = self.out(torch.cat([final, mean], dim=1))
        return out


class _Modulated(nn.Module):
    """Conv → GroupNorm without its own scale → scale and shift from the text → ReLU."""

    def __init__(self, cin: int, cout: int, config: GanConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.GroupNorm(config.groups, cout, affine=False)
        self.film = nn.Linear(config.text_dim, 2 * cout)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(text)[:, :, None, None].chunk(2, dim=1)
        return F.relu(self.norm(self.conv(x)) * (1 + scale) + shift)


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, config: GanConfig) -> None:
        super().__init__()
        self.first = _Modulated(cin, cout, config)
        self.second = _Modulated(cout, cout, config)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # The first convolution runs before the doubling: a quarter of the work for the widest layer.
        h = F.interpolate(self.first(x, text), scale_factor=2.0, mode="nearest")
        skip = F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")
        out: torch.Tensor = self.second(h, text) + skip
        return out


def _coordinates(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    # x and y in [-1, 1] across the canvas, whatever its aspect.
    ys = torch.linspace(-1.0, 1.0, height, dtype=like.dtype, device=like.device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=like.dtype, device=like.device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


class Generator(nn.Module):
    """z-map + text → RGB in [-1, 1], `upsampling` times the z-map's size."""

    def __init__(self, config: GanConfig) -> None:
        super().__init__()
        self.config = config
        self.text = TextEncoder(config)
        first = config.channels[0]
        self.stem = nn.Conv2d(config.z_channels + 2, first, 3, padding=1)
        self.stem_text = nn.Linear(config.text_dim, first)
        self.blocks = nn.ModuleList(
            _UpBlock(cin, cout, config)
            for cin, cout in zip(config.channels, config.channels[1:], strict=False)
        )
        self.to_rgb = nn.Conv2d(config.channels[-1], 3, 3, padding=1)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (batch × text_dim) of `texts`."""
        ids, lengths = tokenize(texts, self.config)
        out: torch.Tensor = self.text(ids.to(self.stem.weight.device), lengths)
        return out

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = z.shape
        x = torch.cat([z, _coordinates(batch, height, width, z)], dim=1)
        x = F.relu(self.stem(x) + self.stem_text(text)[:, :, None, None])
        for block in self.blocks:
            x = block(x, text)
        return torch.tanh(self.to_rgb(x))


class Discriminator(nn.Module):
    """Spectral-norm projection discriminator with its own text encoder and auxiliary attribute heads.

    `forward` returns (realness score per image, background logits, (shape, colour) pair logits).
    """

    def __init__(self, config: GanConfig, *, backgrounds: int, pairs: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.config = config
        self.text = TextEncoder(config)
        layers: list[nn.Module] = []
        cin = 3
        for cout in channels:
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            cin = cout
        layers += [spectral_norm(nn.Conv2d(cin, cin, 3, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        pooled = 2 * cin  # mean and max over positions
        self.score = spectral_norm(nn.Linear(pooled, 1))
        self.project = spectral_norm(nn.Linear(config.text_dim, pooled))
        self.background = nn.Linear(pooled, backgrounds)
        self.pairs = nn.Linear(pooled, pairs)

    def forward(
        self, images: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Mean over positions (rather than SN-GAN's sum, so every aspect is scored on one scale) and
        # max, which says whether a small shape is there at all wherever it is.
        features = self.features(images)
        h = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        text = self.text(ids, lengths)
        score = self.score(h).squeeze(1) + (self.project(text) * h).sum(dim=1)
        return score, self.background(h), self.pairs(h)


class Encoder(nn.Module):
    """Picture → the mean and log-variance of a z-map (training only: the cVAE-GAN's reconstruction path)."""

    def __init__(self, config: GanConfig, *, channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in channels:
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.out = nn.Conv2d(cin, 2 * config.z_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.out(self.features(images)).chunk(2, dim=1)
        return mean, log_variance.clamp(-8.0, 4.0)
