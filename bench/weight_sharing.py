"""Weight sharing: resident memory with text-to-image, image-to-image and inpainting pipelines loaded.

Builds a pipeline with Stable Diffusion 1.5's shapes (UNet 860 M, VAE 84 M, CLIP ViT-L text encoder
123 M parameters) from configs with random weights, so the weights dominate the process, then derives
the image-to-image and inpainting pipelines the way the backend does (`LoadedModel.img2img` /
`.inpaint`, i.e. `from_pipe`) and prints the process's resident memory at each stage.

    .venv/bin/python -m bench.weight_sharing

Target: all three pipelines ≤ 1.10 × text-to-image alone. Needs ~6 GiB of free memory and a minute.
"""

from __future__ import annotations

import gc
import platform
import time
from typing import Any

import torch

TARGET = 1.10


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def build_sd15_shaped_pipeline() -> Any:
    """Stable Diffusion 1.5's architecture with random weights (no download)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.tiny import TOKENIZER_DIR
    from engine.tiny.architecture import load_tokenizer

    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=load_tokenizer(TOKENIZER_DIR),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _storages(*pipes: Any) -> tuple[int, int]:
    """Distinct parameter storages across the pipelines, and their total bytes."""
    seen: dict[int, int] = {}
    for pipe in pipes:
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            for p in module.parameters():
                seen[p.untyped_storage().data_ptr()] = p.untyped_storage().nbytes()
    return len(seen), sum(seen.values())


def main() -> None:
    from engine.backends._model import LoadedModel

    torch.set_grad_enabled(False)
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    gc.collect()
    baseline = rss_mib()
    started = time.perf_counter()
    model = LoadedModel(build_sd15_shaped_pipeline(), "sd15-shaped-random")
    gc.collect()
    text2img = rss_mib()
    count, nbytes = _storages(model.text2img)
    weights = nbytes / 2**20
    print(f"built text-to-image in {time.perf_counter() - started:.0f} s: {count} tensors, {weights:.0f} MiB")
    print(f"RSS before loading:         {baseline:8.0f} MiB")
    print(f"RSS text-to-image:          {text2img:8.0f} MiB")
    img2img, inpaint = model.img2img, model.inpaint
    gc.collect()
    all_three = rss_mib()
    shared_count, shared_bytes = _storages(model.text2img, img2img, inpaint)
    names = f"{type(img2img).__name__}, {type(inpaint).__name__}"
    print(f"RSS + img2img + inpaint:    {all_three:8.0f} MiB  ({names})")
    print(f"distinct tensors across the three pipelines: {shared_count} ({shared_bytes / 2**20:.0f} MiB)")
    ratio = all_three / text2img
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"ratio all three / text-to-image alone: {ratio:.3f} (target <= {TARGET:.2f}) -> {verdict}")
    copy_ratio = (text2img + weights) / text2img
    print(f"a second copy of the weights would add {weights:.0f} MiB (ratio ~{copy_ratio:.2f})")


if __name__ == "__main__":
    main()
