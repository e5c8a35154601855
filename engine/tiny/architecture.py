"""The tiny model's architecture: configs for a Stable-Diffusion-shaped UNet, VAE and CLIP text encoder,
the word-level tokenizer, and builders that assemble them into a diffusers pipeline.

Everything is small enough to train on a 2-core CPU in minutes and to run a 4-image 64×64 grid in about
a second: the VAE downsamples 8× (64×64 pixels → 8×8×4 latents), as Stable Diffusion's does.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from engine.tiny.data import COLOURS, COUNT_WORDS, POSITIONS, SHAPES, SIZES

__all__ = [
    "EXTRA_WORDS",
    "SCHEDULER_CONFIG",
    "TEXT_ENCODER_CONFIG",
    "UNET_CONFIG",
    "VAE_CONFIG",
    "build_components",
    "load_tokenizer",
    "vocabulary_words",
    "write_tokenizer",
]

SAMPLE_SIZE = 64
"""Native image side in pixels."""

VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    # No attention in the 8×8 mid block: measured on this data, the VAE learns faster without it.
    "mid_block_add_attention": False,
    "sample_size": SAMPLE_SIZE,
    "scaling_factor": 1.0,  # replaced by the measured 1/std of the trained VAE's latents
}

TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 128,
    "hidden_act": "quick_gelu",
}

UNET_CONFIG: dict[str, Any] = {
    "sample_size": SAMPLE_SIZE // 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [64, 128],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": TEXT_ENCODER_CONFIG["hidden_size"],
    "norm_num_groups": 32,
}

SCHEDULER_CONFIG: dict[str, Any] = {
    # Stable Diffusion's training noise schedule; the model is trained on exactly these betas, so any
    # diffusers scheduler built `from_config` of this (Euler, DPM++, DDIM, UniPC) samples it correctly.
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}

EXTRA_WORDS = (
    # glue words of the captions and of ordinary prompts
    "an the of in on at with and or no not without background shape shapes one four five many some",
    "tiny large huge medium little middle centre center corner upper lower side top bottom left right",
    "dark light bright pale deep colour color colours colors colorful grey magenta violet gold silver",
    "round rectangle oval star heart ring dot dots line lines",
    # words people type into a Midjourney-style bot; the model has never seen them drawn
    "photo picture image painting drawing portrait style art artwork render sketch illustration",
    "cat dog bird tree house lighthouse dusk sunset sunrise sky sea ocean mountain mountains forest city",
    "night day sun moon cloud clouds water fire flower flowers car robot person man woman face",
    "beautiful detailed realistic cinematic cartoon anime blurry ugly low high quality lowres",
)
"""Vocabulary beyond the dataset's captions, so common prompt words are one token each, not letters."""


def vocabulary_words() -> list[str]:
    """Every word that gets its own token: the dataset's caption words first, then `EXTRA_WORDS`."""
    words: list[str] = []
    caption_words = [*COLOURS, *SHAPES, *(s + "s" for s in SHAPES), *SIZES, *COUNT_WORDS.values()]
    caption_words += [w for phrase in POSITIONS for w in phrase.split()]
    caption_words += ["on", "background", "with", "and"]
    for word in caption_words + " ".join(EXTRA_WORDS).split():
        if word not in words:
            words.append(word)
    return words


def _byte_alphabet() -> list[str]:
    # CLIP's byte-level alphabet: every byte maps to one printable character, so no text is untokenizable.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = [chr(b) for b in printable]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    # Plain BPE training over the word list, ties broken by the pair's text so the files are reproducible.
    # Because the merges are learned by the same greedy rule the tokenizer applies, every listed word
    # ends up as exactly one token.
    pieces = {word: [*word[:-1], word[-1] + "</w>"] for word in words}
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for symbols in pieces.values():
            for pair in itertools.pairwise(symbols):
                counts[pair] += 1
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for word, symbols in pieces.items():
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            pieces[word] = merged


def write_tokenizer(directory: Path) -> None:
    """Write CLIPTokenizer files (vocab.json, merges.txt, configs) with a word-level vocabulary."""
    directory.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    merges = _learn_merges(vocabulary_words())
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), *("".join(pair) for pair in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", "utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", "utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", "utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", "utf-8")


def load_tokenizer(directory: Path) -> Any:
    """The shipped `CLIPTokenizer`, loaded offline."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(directory, local_files_only=True)


def build_components(tokenizer_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Fresh, randomly initialised pipeline components (deterministic for a seed)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TEXT_ENCODER_CONFIG,
    )
    text_encoder = CLIPTextModel(text_config)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }
