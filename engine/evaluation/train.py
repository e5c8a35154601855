"""Train the shapes network the evaluation measures with: `python -m engine.evaluation.train`.

Seeded. Each step draws a fresh batch of one-group scenes from `engine.tiny.data` at a random aspect
ratio and resolution, then softens it the way generated pictures are soft (blur, colour drift, noise,
blotches), so the heads read generated pictures as well as drawn ones. Writes the weights
(`shapes_net.safetensors`) and the training record (`shapes_net.json`: command, time, losses,
held-out accuracy) beside the package; docs/evaluation.md quotes the record.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.evaluation._grammar import BACKGROUNDS, KINDS, SHAPE_COLOURS, draw_scene, one_group_scene
from engine.evaluation._network import WEIGHTS, ShapesNet, to_tensor
from engine.tiny.data import Scene

__all__ = ["TrainConfig", "held_out_accuracy", "main", "sample", "train"]

ASPECTS = (1.0, 1.0, 1.0, 1.25, 1.43, 1.5, 1.78, 2.0)
"""Long side / short side of a training batch; each also turned on its side half the time."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    steps: int = 1800
    batch_size: int = 48
    lr: float = 3e-3
    weight_decay: float = 1e-4
    log_every: int = 100


def _targets(scenes: list[Scene]) -> torch.Tensor:
    return torch.tensor(
        [
            [
                BACKGROUNDS.index(s.background),
                KINDS.index(s.groups[0].kind),
                SHAPE_COLOURS.index(s.groups[0].colour),
            ]
            for s in scenes
        ]
    )


def sample(
    rng: random.Random, count: int, *, width: int | None = None, height: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` drawn one-group scenes as uint8 NCHW and their (background, kind, colour) class indices.

    Without `width`/`height`, the batch gets a random aspect and a short side of 40–96 px.
    """
    if width is None or height is None:
        short = rng.randint(40, 96)
        long = round(short * rng.choice(ASPECTS))
        width, height = (long, short) if rng.random() < 0.5 else (short, long)
    scenes = [one_group_scene(rng) for _ in range(count)]
    pixels = to_tensor([draw_scene(scene, rng, width=width, height=height) for scene in scenes])
    return pixels, _targets(scenes)


def soften(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Float pictures in [0, 1], blurred, tinted and blotched by a random amount each."""
    x = pixels.float() / 255.0
    n = x.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    # 1. Blur: one Gaussian for the batch, mixed in by a per-picture amount (none to full).
    sigma = float(uniform(0.6, 2.2, 1))
    radius = math.ceil(2 * sigma)
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, taps.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    blurred = F.conv2d(blurred, taps.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    x = x + uniform(0.0, 1.0, n, 1, 1, 1) * (blurred - x)
    # 2. Colour drift: a small gain and offset per channel.
    x = x * uniform(0.92, 1.08, n, 3, 1, 1) + uniform(-0.05, 0.05, n, 3, 1, 1)
    # 3. Blotches (low-frequency noise, as a diffusion model leaves) and pixel noise.
    blotches = F.interpolate(
        torch.randn(n, 3, 4, 4, generator=generator), size=x.shape[-2:], mode="bilinear", align_corners=False
    )
    x = x + uniform(0.0, 0.05, n, 1, 1, 1) * blotches
    x = x + uniform(0.0, 0.04, n, 1, 1, 1) * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0)


def _loss(network: ShapesNet, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    background, kind, colour = network(x)
    return (
        F.cross_entropy(background, targets[:, 0])
        + F.cross_entropy(kind, targets[:, 1])
        + F.cross_entropy(colour, targets[:, 2])
    )


@torch.no_grad()
def held_out_accuracy(
    network: ShapesNet, *, seed: int, count: int, width: int, height: int, softened: bool
) -> dict[str, float]:
    """Accuracy of each head on `count` fresh scenes at `width`×`height` (softened like training or not)."""
    network.eval()
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    correct = torch.zeros(3)
    for start in range(0, count, 100):
        pixels, targets = sample(rng, min(100, count - start), width=width, height=height)
        x = soften(pixels, generator) if softened else pixels
        predicted = torch.stack([head.argmax(dim=1) for head in network(x)], dim=1)
        correct += (predicted == targets).float().sum(dim=0)
    accuracy = correct / count
    return {"background": float(accuracy[0]), "kind": float(accuracy[1]), "colour": float(accuracy[2])}


def train(config: TrainConfig, *, log: Any = print) -> tuple[ShapesNet, dict[str, Any]]:
    """Train a fresh network; returns it and its training record (losses by step, seconds)."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    network = ShapesNet()
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.steps, pct_start=0.15
    )
    losses: dict[str, float] = {}
    running = 0.0
    started = time.perf_counter()
    network.train()
    for step in range(config.steps):
        pixels, targets = sample(rng, config.batch_size)
        # A quarter of the batches stay crisp, so drawn pictures are read as well as soft ones.
        x = pixels if rng.random() < 0.25 else soften(pixels, generator)
        loss = _loss(network, x, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        schedule.step()
        running += loss.detach().item()
        if (step + 1) % config.log_every == 0 or step == 0:
            seen = 1 if step == 0 else config.log_every
            losses[str(step + 1)] = round(running / seen, 4)
            elapsed = time.perf_counter() - started
            log(f"step {step + 1}/{config.steps} loss {running / seen:.4f} ({elapsed:.0f} s)")
            running = 0.0
    network.eval()
    return network, {"losses": losses, "seconds": round(time.perf_counter() - started, 1)}


HELD_OUT = {
    "64x64": (64, 64, False),
    "96x64 (3:2)": (96, 64, False),
    "80x56 (tiny at --ar 3:2)": (80, 56, False),
    "64x96 (2:3)": (64, 96, False),
    "128x128": (128, 128, False),
    "64x64 softened": (64, 64, True),
    "80x56 softened": (80, 56, True),
}
"""Held-out sets the record reports: size and whether softened like training."""


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(
        prog="python -m engine.evaluation.train", description=__doc__.splitlines()[0]
    )
    defaults = TrainConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--held-out", type=int, default=2000, help="fresh scenes per held-out set")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help="weights file (the record goes beside it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainConfig(seed=args.seed, steps=args.steps)
    network, record = train(config)
    save_file(network.state_dict(), str(args.out))
    accuracy = {
        name: held_out_accuracy(
            network, seed=10_000 + config.seed, count=args.held_out, width=w, height=h, softened=soft
        )
        for name, (w, h, soft) in HELD_OUT.items()
    }
    for name, heads in accuracy.items():
        print(f"held-out {name}: " + ", ".join(f"{head} {value:.2%}" for head, value in heads.items()))
    full = {
        "command": "python -m engine.evaluation.train "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": asdict(config),
        "threads": args.threads,
        "torch": torch.__version__,
        **record,
        "held_out_scenes": args.held_out,
        "held_out_accuracy": accuracy,
    }
    args.out.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} in {record['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
