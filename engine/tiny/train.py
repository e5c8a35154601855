"""Train the built-in `tiny` model on the synthetic shapes dataset: `python -m engine.tiny.train`.

Four steps, all seeded: (1) train the VAE to reconstruct scenes, shape pixels weighted up,
(2) measure its latent scale, (3) train the UNet and the text encoder together on the frozen VAE's
latents with caption dropout, so classifier-free guidance and negative prompts work, (4) train the
VAE's decoder alone a while longer (the encoder, so the UNet's latents, unchanged). Every batch is
drawn at one of several canvas sizes (`SIZES`), so `--ar` sizes are trained too. The result is a
diffusers folder that `StableDiffusionPipeline.from_pretrained` loads offline. Timings and losses:
docs/tiny-model.md.

`--from DIR` runs step 3 alone, further, from a saved pipeline. Off by default, for that: the kind
contrast (`kind_contrast_loss`), extra weight on shape outlines, plain MSE instead of min-SNR, and a share
of low-noise timesteps; docs/tiny-model.md says what they did to the v2 candidate.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.tiny import MODEL_DIR, TOKENIZER_DIR
from engine.tiny.architecture import SCHEDULER_CONFIG, build_components
from engine.tiny.data import COLOURS, SHAPES, sample_batch

__all__ = [
    "TrainConfig",
    "encode_text",
    "kind_contrast_loss",
    "load_components",
    "main",
    "measure_latent_scale",
    "parse_sizes",
    "swap_colour",
    "swap_kind",
    "train",
    "train_further",
    "train_unet",
    "train_vae",
]

Log = Callable[[str], None]


SIZES: tuple[tuple[int, int, float], ...] = ((64, 64, 0.5), (80, 56, 0.3), (56, 80, 0.1), (88, 48, 0.1))
"""Training canvases (width, height, share of the steps): the native square and the sizes the backend
maps `--ar 3:2`, `2:3` and `16:9` to at the tiny model's area (engine/backends/_mapping.py)."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    vae_steps: int = 1500
    vae_lr: float = 1e-3
    vae_batch_size: int = 16
    unet_steps: int = 3200
    unet_lr: float = 7e-4
    text_lr: float = 1.4e-3
    batch_size: int = 32
    caption_dropout: float = 0.1
    kl_weight: float = 1e-6
    min_snr_gamma: float = 5.0
    """Min-SNR loss weighting of the UNet stage (0 = plain epsilon MSE, every timestep alike)."""
    vae_shape_weight: float = 10.0
    """Loss weight of shape pixels against background ones in the VAE stage (1 = plain MSE). Shapes
    cover a few percent of a picture: with plain MSE the VAE learns the background and blurs shapes."""
    unet_shape_weight: float = 4.0
    """The same for the UNet's loss, on the share of each latent's pixel patch that is shape."""
    edge_weight: float = 0.0
    """Extra UNet loss weight on latents over a shape's outline (a band of about 4 px), where a circle, a
    square and a triangle differ (0 = off)."""
    kind_contrast: float = 0.0
    """Weight of `kind_contrast_loss` in the UNet stage (0 = off)."""
    low_noise_share: float = 0.0
    """Share of the UNet stage's timesteps drawn below `low_noise_t` rather than uniformly (0 = none)."""
    low_noise_t: int = 400
    one_group: float = 0.8
    """Share of training scenes with one group of shapes (the rest have two)."""
    sizes: tuple[tuple[int, int, float], ...] = SIZES
    """Training canvases (width, height, share); each step draws its batch at one of them."""
    decoder_steps: int = 2400
    """Stage 4: more training of the VAE's decoder alone (the encoder, so the latents the UNet learned,
    stay as they are), on the same shape-weighted loss: sharper shape outlines."""
    decoder_lr: float = 5e-4
    checkpoint_every: int = 0
    """Save the pipeline to `<out>/checkpoint` every this many UNet steps, and the VAE to
    `<out>/checkpoint-vae` after its stage (0 = never). Checkpoints do not change the result."""
    log_every: int = 50


def parse_sizes(text: str) -> tuple[tuple[int, int, float], ...]:
    """`--sizes`: "64x64:0.5,80x56:0.3" → ((64, 64, 0.5), (80, 56, 0.3)); sides multiples of 8."""
    sizes = []
    for item in text.split(","):
        try:
            canvas, share = item.strip().split(":")
            width, height = (int(side) for side in canvas.lower().split("x"))
            weight = float(share)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"a size is WxH:share, like 80x56:0.3; got {item.strip()!r}"
            ) from None
        if width % 8 or height % 8 or width <= 0 or height <= 0 or weight <= 0:
            raise argparse.ArgumentTypeError(
                f"sides must be positive multiples of 8 and the share above 0; got {item.strip()!r}"
            )
        sizes.append((width, height, weight))
    return tuple(sizes)


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _batch(rng: random.Random, size: int, dropout: float = 0.0) -> tuple[torch.Tensor, list[str]]:
    pixels, captions = sample_batch(rng, size, caption_dropout=dropout)
    return torch.from_numpy(pixels), captions


def _training_batch(
    rng: random.Random, config: TrainConfig, batch_size: int, dropout: float = 0.0
) -> tuple[torch.Tensor, list[str]]:
    # One canvas size per step (a batch is one tensor), drawn from `config.sizes` by their shares.
    width, height, _ = rng.choices(config.sizes, weights=[share for *_, share in config.sizes])[0]
    pixels, captions = sample_batch(
        rng, batch_size, width=width, height=height, caption_dropout=dropout, one_group=config.one_group
    )
    return torch.from_numpy(pixels), captions


def shape_mask(pixels: torch.Tensor) -> torch.Tensor:
    """1 where a pixel differs from its picture's background, else 0 (N×1×H×W).

    The dataset never puts a shape on the top-left pixel, so that pixel is the background colour.
    """
    background = pixels[:, :, :1, :1]
    return ((pixels - background).abs().amax(dim=1, keepdim=True) > 0.05).float()


def _weights(mask: torch.Tensor, shape_weight: float) -> torch.Tensor:
    return _normalised(1.0 + (shape_weight - 1.0) * mask)


def _normalised(weights: torch.Tensor) -> torch.Tensor:
    # Per-element loss weights to mean 1 per picture, so the loss scale stays that of MSE.
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def train_vae(vae: Any, config: TrainConfig, rng: random.Random, log: Log) -> list[float]:
    """Fit the VAE to reconstruct scenes (MSE plus a tiny KL term); returns the loss per step."""
    vae.train()
    optimiser = torch.optim.Adam(vae.parameters(), lr=config.vae_lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: _cosine(s, config.vae_steps, warmup=min(50, config.vae_steps))
    )
    losses: list[float] = []
    for step in range(config.vae_steps):
        pixels, _ = _training_batch(rng, config, config.vae_batch_size)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        squared = (reconstruction - pixels) ** 2
        mse = squared.mean()
        weighted = (squared * _weights(shape_mask(pixels), config.vae_shape_weight)).mean()
        loss = weighted + config.kl_weight * posterior.kl().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(mse.item())
        if step % config.log_every == 0 or step == config.vae_steps - 1:
            log(f"vae step {step:5d}  mse {np.mean(losses[-config.log_every :]):.4f}")
    vae.eval()
    return losses


def finetune_decoder(vae: Any, config: TrainConfig, log: Log) -> list[float]:
    """Train the decoder side of a trained VAE (`post_quant_conv` and `decoder`) with the encoder frozen.

    It has its own seeded data stream and noise, so its result depends only on the VAE it starts from
    (not on how much data the UNet stage drew before it).
    """
    rng = random.Random(config.seed + 4)
    generator = torch.Generator().manual_seed(config.seed + 4)
    params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    for p in vae.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=config.decoder_lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: _cosine(s, config.decoder_steps, warmup=min(50, config.decoder_steps))
    )
    vae.decoder.train()
    losses: list[float] = []
    for step in range(config.decoder_steps):
        pixels, _ = _training_batch(rng, config, config.vae_batch_size)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator)
        reconstruction = vae.decode(latents).sample
        squared = (reconstruction - pixels) ** 2
        loss = (squared * _weights(shape_mask(pixels), config.vae_shape_weight)).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(squared.mean().item())
        if step % config.log_every == 0 or step == config.decoder_steps - 1:
            log(f"decoder step {step:5d}  mse {np.mean(losses[-config.log_every :]):.4f}")
    for p in params:
        p.requires_grad_(False)
    vae.eval()
    return losses


@torch.no_grad()
def measure_latent_scale(vae: Any, rng: random.Random, batches: int = 8, batch_size: int = 64) -> float:
    """1 / std of the VAE's latents over fresh scenes: Stable Diffusion's `scaling_factor`."""
    latents = [vae.encode(_batch(rng, batch_size)[0]).latent_dist.mean for _ in range(batches)]
    return float(1.0 / torch.cat(latents).std())


def _latent_weights(mask: torch.Tensor, factor: int, config: TrainConfig) -> torch.Tensor:
    """Per-latent loss weights from a batch's shape mask (N×1×H×W) for latents `factor` times smaller:
    shape area weighted `unet_shape_weight`, plus `edge_weight` on the outline; mean 1 per picture."""
    weights = 1.0 + (config.unet_shape_weight - 1.0) * F.avg_pool2d(mask, factor)
    if config.edge_weight:
        outline = F.max_pool2d(mask, 5, 1, 2) + F.max_pool2d(-mask, 5, 1, 2)  # dilated minus eroded
        weights = weights + config.edge_weight * F.avg_pool2d(outline, factor)
    return _normalised(weights)


def _timesteps(count: int, config: TrainConfig, total: int, generator: torch.Generator) -> torch.Tensor:
    uniform = torch.randint(0, total, (count,), generator=generator)
    if not config.low_noise_share:
        return uniform
    low = torch.randint(0, config.low_noise_t, (count,), generator=generator)
    return torch.where(torch.rand(count, generator=generator) < config.low_noise_share, low, uniform)


_KIND_SWAP = {kind: SHAPES[(i + 1) % len(SHAPES)] for i, kind in enumerate(SHAPES)}
_KIND_WORD = re.compile(rf"\b({'|'.join(SHAPES)})(s?)\b")
_COLOUR_WORD = re.compile(rf"\b({'|'.join(COLOURS)})\b")


def swap_kind(text: str) -> str:
    """`text` with every shape word moved on to the next kind (circle → square → triangle → circle)."""
    return _KIND_WORD.sub(lambda m: _KIND_SWAP[m.group(1)] + m.group(2), text)


def swap_colour(text: str, rng: random.Random) -> str:
    """`text` with one of its colour words (all its occurrences) replaced by a colour it does not name."""
    named = sorted(set(_COLOUR_WORD.findall(text)))
    if not named:
        return text
    old = rng.choice(named)
    new = rng.choice([colour for colour in COLOURS if colour not in named])
    return re.sub(rf"\b{old}\b", new, text)


def kind_contrast_loss(
    tokenizer: Any, text_encoder: Any, captions: list[str], hidden: torch.Tensor, rng: random.Random
) -> torch.Tensor:
    """Keeps the text encoder telling shape kinds apart: for each caption that names a shape, its encoding
    should differ from the same caption with the kind swapped (`swap_kind`) at least as much as from the
    caption with a colour swapped. Trained jointly without it, the encoder maps "circle" and "square" to
    almost the same encoding (docs/tiny-model.md), and the UNet cannot learn what it cannot see."""
    named = [i for i, text in enumerate(captions) if swap_kind(text) != text]
    if not named:
        return hidden.new_zeros(())
    mine = hidden[named]
    kinds = encode_text(tokenizer, text_encoder, [swap_kind(captions[i]) for i in named])
    with torch.no_grad():
        colours = encode_text(tokenizer, text_encoder, [swap_colour(captions[i], rng) for i in named])
        reference = _rms(mine.detach(), colours).clamp(min=1e-3)
    return torch.relu(1.0 - _rms(mine, kinds) / reference).mean()


def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).mean(dim=(1, 2)).add(1e-8).sqrt()  # finite gradient where a == b


def encode_text(tokenizer: Any, text_encoder: Any, captions: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's max length (as the pipeline pads) through the text encoder."""
    ids = tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    hidden: torch.Tensor = text_encoder(ids)[0]
    return hidden


def train_unet(
    components: dict[str, Any],
    config: TrainConfig,
    rng: random.Random,
    log: Log,
    checkpoint: Callable[[int], None] | None = None,
) -> list[float]:
    """Train UNet and text encoder jointly on epsilon prediction with min-SNR weighting
    (and shape latents weighted by `config.unet_shape_weight`); `checkpoint(step)` is called every
    `config.checkpoint_every` steps."""
    from diffusers import DDPMScheduler

    vae, unet, text_encoder, tokenizer = (components[k] for k in ("vae", "unet", "text_encoder", "tokenizer"))
    noise_schedule = DDPMScheduler(
        num_train_timesteps=SCHEDULER_CONFIG["num_train_timesteps"],
        beta_start=SCHEDULER_CONFIG["beta_start"],
        beta_end=SCHEDULER_CONFIG["beta_end"],
        beta_schedule=SCHEDULER_CONFIG["beta_schedule"],
    )
    alphas = noise_schedule.alphas_cumprod
    snr_all = alphas / (1 - alphas)
    scale = vae.config.scaling_factor
    params = [*unet.parameters(), *text_encoder.parameters()]
    # The text encoder starts from random weights too and only learns through cross-attention, whose
    # gradients are small: a higher rate keeps the prompt from being ignored.
    groups = [
        {"params": list(unet.parameters()), "lr": config.unet_lr},
        {"params": list(text_encoder.parameters()), "lr": config.text_lr},
    ]
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: _cosine(s, config.unet_steps, warmup=min(100, config.unet_steps))
    )
    generator = torch.Generator().manual_seed(config.seed)
    swaps = random.Random(config.seed + 5)  # its own stream: the data drawn stays that of the run without it
    unet.train()
    text_encoder.train()
    losses: list[float] = []
    unet.to(memory_format=torch.channels_last)  # measured about 8% faster a step on this CPU
    for step in range(config.unet_steps):
        pixels, captions = _training_batch(rng, config, config.batch_size, config.caption_dropout)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator) * scale
            # Loss weights from how much of each latent's pixel patch is shape (and outline).
            factor = pixels.shape[-1] // latents.shape[-1]
            weights = _latent_weights(shape_mask(pixels), factor, config)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = _timesteps(len(latents), config, noise_schedule.config.num_train_timesteps, generator)
        noisy = noise_schedule.add_noise(latents, noise, timesteps)
        hidden = encode_text(tokenizer, text_encoder, captions)
        predicted = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        squared = F.mse_loss(predicted, noise, reduction="none")
        per_sample = squared.mean(dim=(1, 2, 3))
        weighted = (squared * weights).mean(dim=(1, 2, 3))
        if config.min_snr_gamma:
            snr = snr_all[timesteps]
            weighted = weighted * torch.clamp(snr, max=config.min_snr_gamma) / snr
        loss: Any = weighted.mean()  # Any: torch's `Tensor.backward` is untyped
        if config.kind_contrast:
            loss = loss + config.kind_contrast * kind_contrast_loss(
                tokenizer, text_encoder, captions, hidden, swaps
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        losses.append(per_sample.mean().item())
        if step % config.log_every == 0 or step == config.unet_steps - 1:
            log(f"unet step {step:5d}  eps-mse {np.mean(losses[-config.log_every :]):.4f}")
        if checkpoint is not None and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            checkpoint(step + 1)
    unet.to(memory_format=torch.contiguous_format)
    unet.eval()
    text_encoder.eval()
    return losses


def save_pipeline(components: dict[str, Any], out_dir: Path) -> None:
    """Write a diffusers folder: UNet and VAE as fp16 safetensors (diffusers loads them as fp32),
    the text encoder as fp32 (transformers would keep fp16 on load, and it is small)."""
    from diffusers import StableDiffusionPipeline

    # Copies, so a checkpoint in the middle of training leaves the fp32 weights being trained alone.
    halves = {
        name: copy.deepcopy(components[name]).to(torch.float16, memory_format=torch.contiguous_format)
        for name in ("unet", "vae")
    }
    pipe = StableDiffusionPipeline(**{**components, **halves}, requires_safety_checker=False)
    pipe.save_pretrained(out_dir, safe_serialization=True)


def _checkpoints(components: dict[str, Any], out_dir: Path, log: Log) -> Callable[[int], None]:
    def checkpoint(step: int) -> None:
        save_pipeline(components, out_dir / "checkpoint")
        log(f"checkpoint at unet step {step} in {out_dir / 'checkpoint'}")

    return checkpoint


def _run_facts(config: TrainConfig) -> dict[str, Any]:
    return {
        "config": {k: getattr(config, k) for k in config.__slots__},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def load_components(folder: Path) -> dict[str, Any]:
    """A trained pipeline's components from its diffusers folder, in fp32 and ready to train further."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
    components: dict[str, Any] = dict(pipe.components)
    components["vae"].requires_grad_(False)
    return components


def train_further(config: TrainConfig, start: Path, out_dir: Path, log: Log = print) -> dict[str, Any]:
    """Step 3 again, for `config.unet_steps`, from the pipeline in `start` (its VAE as it is, frozen);
    save to `out_dir`; returns a summary for the docs."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    components = load_components(start)
    started = time.perf_counter()
    unet_losses = train_unet(components, config, rng, log, _checkpoints(components, out_dir, log))
    save_pipeline(components, out_dir)
    summary = {
        "started_from": str(start),
        **_run_facts(config),
        "unet_seconds": round(time.perf_counter() - started, 1),
        "unet_eps_mse": _milestones(unet_losses),
    }
    log(json.dumps(summary, indent=2))
    return summary


def train(config: TrainConfig, out_dir: Path, log: Log = print) -> dict[str, Any]:
    """Run all four steps and save the pipeline to `out_dir`; returns a summary for the docs."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    components = build_components(TOKENIZER_DIR, seed=config.seed)
    started = time.perf_counter()
    vae_losses = train_vae(components["vae"], config, rng, log)
    vae_s = time.perf_counter() - started
    for p in components["vae"].parameters():
        p.requires_grad_(False)
    scale = measure_latent_scale(components["vae"], rng)
    components["vae"].register_to_config(scaling_factor=scale)
    log(f"latent scaling factor {scale:.4f}")
    if config.checkpoint_every:
        components["vae"].save_pretrained(out_dir / "checkpoint-vae")

    unet_losses = train_unet(components, config, rng, log, _checkpoints(components, out_dir, log))
    unet_s = time.perf_counter() - started - vae_s
    decoder_losses = finetune_decoder(components["vae"], config, log)
    total_s = time.perf_counter() - started
    save_pipeline(components, out_dir)
    summary = {
        **_run_facts(config),
        "vae_seconds": round(vae_s, 1),
        "unet_seconds": round(unet_s, 1),
        "decoder_seconds": round(total_s - vae_s - unet_s, 1),
        "scaling_factor": scale,
        "vae_mse": _milestones(vae_losses),
        "unet_eps_mse": _milestones(unet_losses),
        "decoder_mse": _milestones(decoder_losses),
    }
    log(json.dumps(summary, indent=2))
    return summary


def _milestones(losses: list[float], points: int = 6) -> dict[int, float]:
    # Mean loss over a window ending at evenly spaced steps: a loss curve small enough for the docs.
    if not losses:
        return {}
    window = max(1, len(losses) // 20)
    marks = sorted({round(i * (len(losses) - 1) / (points - 1)) for i in range(points)})
    return {m: round(float(np.mean(losses[max(0, m - window + 1) : m + 1])), 4) for m in marks}


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m engine.tiny.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="diffusers folder to write")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="UNet batch")
    parser.add_argument("--vae-batch-size", type=int, default=defaults.vae_batch_size)
    parser.add_argument("--decoder-steps", type=int, default=defaults.decoder_steps)
    parser.add_argument("--unet-lr", type=float, default=defaults.unet_lr)
    parser.add_argument("--text-lr", type=float, default=defaults.text_lr)
    parser.add_argument("--vae-shape-weight", type=float, default=defaults.vae_shape_weight)
    parser.add_argument("--unet-shape-weight", type=float, default=defaults.unet_shape_weight)
    parser.add_argument("--edge-weight", type=float, default=defaults.edge_weight)
    parser.add_argument("--kind-contrast", type=float, default=defaults.kind_contrast)
    parser.add_argument("--min-snr-gamma", type=float, default=defaults.min_snr_gamma, help="0 = plain MSE")
    parser.add_argument("--low-noise-share", type=float, default=defaults.low_noise_share)
    parser.add_argument("--low-noise-t", type=int, default=defaults.low_noise_t)
    parser.add_argument(
        "--from",
        dest="start",
        type=Path,
        help="train the UNet and text encoder further from this pipeline folder (step 3 only)",
    )
    parser.add_argument("--one-group", type=float, default=defaults.one_group)
    parser.add_argument(
        "--square-only",
        dest="sizes",
        action="store_const",
        const=((64, 64, 1.0),),
        default=defaults.sizes,
        help="train at 64×64 only (= --sizes 64x64:1)",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=defaults.sizes,
        help="training canvases as WxH:share, comma-separated (default: "
        + ",".join(f"{w}x{h}:{share:g}" for w, h, share in SIZES)
        + ")",
    )
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        seed=args.seed,
        vae_steps=args.vae_steps,
        unet_steps=args.unet_steps,
        batch_size=args.batch_size,
        vae_batch_size=args.vae_batch_size,
        decoder_steps=args.decoder_steps,
        unet_lr=args.unet_lr,
        text_lr=args.text_lr,
        vae_shape_weight=args.vae_shape_weight,
        unet_shape_weight=args.unet_shape_weight,
        edge_weight=args.edge_weight,
        kind_contrast=args.kind_contrast,
        min_snr_gamma=args.min_snr_gamma,
        low_noise_share=args.low_noise_share,
        low_noise_t=args.low_noise_t,
        one_group=args.one_group,
        sizes=args.sizes,
        checkpoint_every=args.checkpoint_every,
    )

    def log(line: str) -> None:
        print(line, flush=True)

    if args.start is not None:
        summary = train_further(config, args.start, args.out, log)
    else:
        summary = train(config, args.out, log)
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
