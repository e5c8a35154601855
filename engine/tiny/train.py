"""Train the built-in `tiny` model on the synthetic shapes dataset: `python -m engine.tiny.train`.

Three steps, all seeded: (1) train the VAE to reconstruct scenes, (2) measure its latent scale,
(3) train the UNet and the text encoder together on the frozen VAE's latents with caption dropout,
so classifier-free guidance and negative prompts work. The result is a diffusers folder that
`StableDiffusionPipeline.from_pretrained` loads offline. Timings and losses: docs/tiny-model.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
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
from engine.tiny.data import sample_batch

__all__ = ["TrainConfig", "encode_text", "main", "measure_latent_scale", "train", "train_unet", "train_vae"]

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    vae_steps: int = 1200
    vae_lr: float = 1e-3
    vae_batch_size: int = 16
    unet_steps: int = 1800
    unet_lr: float = 5e-4
    text_lr: float = 1e-3
    batch_size: int = 32
    caption_dropout: float = 0.1
    kl_weight: float = 1e-6
    min_snr_gamma: float = 5.0
    log_every: int = 50


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _batch(rng: random.Random, size: int, dropout: float = 0.0) -> tuple[torch.Tensor, list[str]]:
    pixels, captions = sample_batch(rng, size, caption_dropout=dropout)
    return torch.from_numpy(pixels), captions


def train_vae(vae: Any, config: TrainConfig, rng: random.Random, log: Log) -> list[float]:
    """Fit the VAE to reconstruct scenes (MSE plus a tiny KL term); returns the loss per step."""
    vae.train()
    optimiser = torch.optim.Adam(vae.parameters(), lr=config.vae_lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: _cosine(s, config.vae_steps, warmup=min(50, config.vae_steps))
    )
    losses: list[float] = []
    for step in range(config.vae_steps):
        pixels, _ = _batch(rng, config.vae_batch_size)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        mse = F.mse_loss(reconstruction, pixels)
        loss = mse + config.kl_weight * posterior.kl().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(mse.item())
        if step % config.log_every == 0 or step == config.vae_steps - 1:
            log(f"vae step {step:5d}  mse {np.mean(losses[-config.log_every :]):.4f}")
    vae.eval()
    return losses


@torch.no_grad()
def measure_latent_scale(vae: Any, rng: random.Random, batches: int = 8, batch_size: int = 64) -> float:
    """1 / std of the VAE's latents over fresh scenes: Stable Diffusion's `scaling_factor`."""
    latents = [vae.encode(_batch(rng, batch_size)[0]).latent_dist.mean for _ in range(batches)]
    return float(1.0 / torch.cat(latents).std())


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


def train_unet(components: dict[str, Any], config: TrainConfig, rng: random.Random, log: Log) -> list[float]:
    """Train UNet and text encoder jointly on epsilon prediction with min-SNR weighting."""
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
    unet.train()
    text_encoder.train()
    losses: list[float] = []
    for step in range(config.unet_steps):
        pixels, captions = _batch(rng, config.batch_size, config.caption_dropout)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator) * scale
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(
            0, noise_schedule.config.num_train_timesteps, (len(latents),), generator=generator
        )
        noisy = noise_schedule.add_noise(latents, noise, timesteps)
        predicted = unet(
            noisy, timesteps, encoder_hidden_states=encode_text(tokenizer, text_encoder, captions)
        ).sample
        snr = snr_all[timesteps]
        weight = torch.clamp(snr, max=config.min_snr_gamma) / snr
        per_sample = F.mse_loss(predicted, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * weight).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        losses.append(per_sample.mean().item())
        if step % config.log_every == 0 or step == config.unet_steps - 1:
            log(f"unet step {step:5d}  eps-mse {np.mean(losses[-config.log_every :]):.4f}")
    unet.eval()
    text_encoder.eval()
    return losses


def save_pipeline(components: dict[str, Any], out_dir: Path) -> None:
    """Write a diffusers folder: UNet and VAE as fp16 safetensors (diffusers loads them as fp32),
    the text encoder as fp32 (transformers would keep fp16 on load, and it is small)."""
    from diffusers import StableDiffusionPipeline

    halves = {name: components[name].to(torch.float16) for name in ("unet", "vae")}
    pipe = StableDiffusionPipeline(**{**components, **halves}, requires_safety_checker=False)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    for model in halves.values():
        model.to(torch.float32)


def train(config: TrainConfig, out_dir: Path, log: Log = print) -> dict[str, Any]:
    """Run all three steps and save the pipeline to `out_dir`; returns a summary for the docs."""
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
    unet_losses = train_unet(components, config, rng, log)
    total_s = time.perf_counter() - started
    save_pipeline(components, out_dir)
    summary = {
        "config": {k: getattr(config, k) for k in config.__slots__},
        "vae_seconds": round(vae_s, 1),
        "unet_seconds": round(total_s - vae_s, 1),
        "scaling_factor": scale,
        "vae_mse": _milestones(vae_losses),
        "unet_eps_mse": _milestones(unet_losses),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
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
    )
    summary = train(config, args.out, log=lambda line: print(line, flush=True))
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
