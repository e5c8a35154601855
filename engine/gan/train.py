"""Train the built-in `gan-tiny` generator on the coloured-shapes captions (see docs/gan-model.md).

    nice -n 10 python -m engine.gan.train --out engine/gan/model --work /tmp/gan-train

Seeded and deterministic in its choices (data stream, z's, aspect schedule); hinge loss, a spectral-norm
projection discriminator with auxiliary background / (shape, colour) heads, two learning rates, and an
exponential moving average of the generator, which is what ships. Checkpoints go to `--work` (resume
with `--resume`); the EMA generator is written to `--out` at every checkpoint, so a stopped run still
leaves a usable model.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.nn import functional as F

from engine.gan.data import BACKGROUNDS, PAIRS, Batch, sample
from engine.gan.folder import CONFIG_FILE, WEIGHTS_FILE, save_generator
from engine.gan.network import UNKNOWN, Discriminator, Encoder, GanConfig, Generator, tokenize
from engine.tiny.data import COLOURS, COUNT_WORDS, POSITIONS, SHAPES, SIZES

__all__ = ["dataset_vocabulary", "main"]

# (width, height) of each step's batch, in turn: half the steps square, the rest 3:2 and 2:3.
SCHEDULE = ((64, 64), (96, 64), (64, 64), (64, 96))


def dataset_vocabulary() -> tuple[str, ...]:
    """Every word the dataset's captions use, in a fixed order."""
    words: list[str] = []
    candidates = [*COLOURS, *SHAPES, *(s + "s" for s in SHAPES), *SIZES, *COUNT_WORDS.values()]
    candidates += [w for phrase in POSITIONS for w in phrase.split()] + ["on", "background", "with", "and"]
    for word in candidates:
        if word not in words:
            words.append(word)
    return tuple(words)


def _texts(batch: Batch, config: GanConfig, generator: torch.Generator, dropout: float) -> Any:
    ids, lengths = tokenize(batch.captions, config)
    # Word dropout: a few words become <unk>, so unknown words in members' prompts are learned as noise.
    drop = (torch.rand(ids.shape, generator=generator) < dropout) & (ids > UNKNOWN)
    return ids.masked_fill(drop, UNKNOWN), lengths


def _aux_loss(background: torch.Tensor, pairs: torch.Tensor, batch: Batch) -> torch.Tensor:
    loss = torch.zeros(())
    if (batch.background >= 0).any():
        loss = loss + F.cross_entropy(background, batch.background, ignore_index=-1)
    if batch.pairs_named.any():
        # Cross-entropy against the drawn pairs shared out evenly: a strong pull towards each named
        # (shape, colour) pair, where a per-pair sigmoid drowns in the 35 pairs that are absent.
        named = batch.pairs_named
        target = batch.pairs[named] / batch.pairs[named].sum(1, keepdim=True)
        loss = loss - (target * F.log_softmax(pairs[named], dim=1)).sum(1).mean()
    return loss


_PALETTE = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 127.5 - 1  # 12 × 3, in [-1, 1]
_SOFTNESS = 0.05
_MIN_BACKGROUND = 0.5
"""Real scenes are at least about 55 % background (three big shapes); a picture under half is wrong."""
_MIN_SHAPE = 0.02
"""A named shape colour covers at least this share of the picture (a small shape is about 2.5 %)."""


def _palette_loss(fake: torch.Tensor, batch: Batch) -> torch.Tensor:
    """How far a generated picture is from the caption's palette: every pixel near the named background
    or a named shape colour, the background the larger part, each named shape colour present.

    Only for captions that name both the background and the shapes (where the palette is known); the
    discriminator still decides what the shapes look like.
    """
    known = (batch.background >= 0) & batch.pairs_named
    if not known.any():
        return torch.zeros(())
    pixels = fake[known].flatten(2).transpose(1, 2)  # n × HW × 3
    distance = ((pixels.unsqueeze(2) - _PALETTE.view(1, 1, -1, 3)) ** 2).sum(-1)  # n × HW × 12
    shape_colours = batch.pairs[known].view(-1, len(SHAPES), len(COLOURS)).amax(1) > 0
    background = F.one_hot(batch.background[known], len(COLOURS)).bool()
    allowed = (shape_colours | background).unsqueeze(1)
    masked = distance.masked_fill(~allowed, float("inf"))
    off_palette = masked.amin(-1).mean()
    share = torch.softmax(-masked / _SOFTNESS, dim=-1).mean(1)  # n × 12: each colour's share of the picture
    too_little_background = F.relu(_MIN_BACKGROUND - (share * background).sum(1)).mean()
    missing_shapes = (F.relu(_MIN_SHAPE - share) * shape_colours).sum(1).mean() / _MIN_SHAPE
    return off_palette + too_little_background + missing_shapes


def _accuracy(background: torch.Tensor, pairs: torch.Tensor, batch: Batch) -> tuple[float, float]:
    known = batch.background >= 0
    bg = (background.argmax(1)[known] == batch.background[known]).float().mean().item() if known.any() else 0
    # Whether the pair the head likes best is one that was drawn.
    named = batch.pairs_named
    best = pairs[named].argmax(1, keepdim=True)
    hits = (batch.pairs[named].gather(1, best) > 0).float().mean().item() if named.any() else 0
    return float(bg), float(hits)


def _save_samples(generator: Generator, path: Path, seed: int) -> None:
    prompts = [
        "a red circle on a blue background",
        "a yellow square on a black background",
        "a green triangle on white",
        "two purple circles on orange",
        "a big cyan square in the top left on a pink background",
        "a white triangle and a red square on gray",
    ]
    torch_gen = torch.Generator().manual_seed(seed)
    rows = []
    with torch.no_grad():
        text = generator.encode(prompts)
        for _ in range(4):
            z = torch.randn((len(prompts), generator.config.z_channels, 4, 4), generator=torch_gen)
            rows.append(generator(z, text))
    images = torch.stack(rows, 1)  # prompts × 4 × 3 × 64 × 64
    grid = images.permute(0, 3, 1, 4, 2).reshape(len(prompts) * 64, 4 * 64, 3)
    pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    Image.fromarray(pixels).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "model")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gan-train"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-g", type=float, default=2e-4)
    parser.add_argument("--lr-d", type=float, default=4e-4)
    parser.add_argument("--aux", type=float, default=1.0, help="weight of the auxiliary attribute losses")
    parser.add_argument("--g-channels", default="64,64,32,16,8", help="generator channels, 4×4 to 64×64")
    parser.add_argument("--d-channels", default="16,32,64,128", help="discriminator channels, 32×32 to 4×4")
    parser.add_argument("--reconstruction", type=float, default=10.0, help="weight of the cVAE L1 loss")
    parser.add_argument("--kl", type=float, default=0.1, help="weight of the encoder's KL term (per z entry)")
    parser.add_argument("--palette", type=float, default=1.0, help="weight of the caption-palette loss")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)

    # 1. Networks, optimisers and the seeded streams.
    torch.manual_seed(args.seed)
    channels = tuple(int(c) for c in args.g_channels.split(","))
    config = GanConfig(vocabulary=dataset_vocabulary(), channels=channels)
    generator = Generator(config)
    d_channels = tuple(int(c) for c in args.d_channels.split(","))
    discriminator = Discriminator(config, backgrounds=BACKGROUNDS, pairs=PAIRS, channels=d_channels)
    encoder = Encoder(config, channels=d_channels)
    ema = copy.deepcopy(generator).eval().requires_grad_(False)
    opt_g = torch.optim.Adam([*generator.parameters(), *encoder.parameters()], lr=args.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr_d, betas=(0.0, 0.9))
    data = random.Random(args.seed)
    noise = torch.Generator().manual_seed(args.seed)
    record: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "log": [], "elapsed_s": 0.0}
    start_step = 0
    checkpoint = args.work / "checkpoint.pt"
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)  # our own file, written below
        generator.load_state_dict(state["generator"])
        encoder.load_state_dict(state["encoder"])
        discriminator.load_state_dict(state["discriminator"])
        ema.load_state_dict(state["ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        data.setstate(state["data"])
        noise.set_state(state["noise"])
        record, start_step = state["record"], state["step"]
    began = time.monotonic() - record["elapsed_s"]
    window: dict[str, list[float]] = {}

    for step in range(start_step, args.steps):
        width, height = SCHEDULE[step % len(SCHEDULE)]
        batch = sample(data, args.batch, width, height)
        ids, lengths = _texts(batch, config, noise, dropout=0.05)
        z_shape = (args.batch, config.z_channels, height // config.upsampling, width // config.upsampling)

        # 2. One generator pass makes both halves of the cVAE-GAN: the real pictures rebuilt from their
        # encoded z (a dense signal that teaches shapes and colours fast) and pictures from prior z's
        # (what members get, and what the discriminator judges). It serves both updates below.
        mean, log_variance = encoder(batch.pixels)
        encoded = mean + torch.randn(mean.shape, generator=noise) * (0.5 * log_variance).exp()
        text = generator.text(ids, lengths)
        made = generator(torch.cat([encoded, torch.randn(z_shape, generator=noise)]), torch.cat([text, text]))
        rebuilt, fake = made.chunk(2)

        # 3. Discriminator: hinge on real vs generated, auxiliary heads on the real pictures only.
        real_score, real_bg, real_pairs = discriminator(batch.pixels, ids, lengths)
        fake_score, _, _ = discriminator(fake.detach(), ids, lengths)
        d_adv = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
        d_aux = _aux_loss(real_bg, real_pairs, batch)
        opt_d.zero_grad(set_to_none=True)
        (d_adv + args.aux * d_aux).backward()
        opt_d.step()

        # 4. Generator and encoder: fool the discriminator, make its heads read what the caption says,
        # keep to the caption's palette, rebuild the real pictures, keep encoded z's near the prior.
        score, fake_bg, fake_pairs = discriminator(fake, ids, lengths)
        g_adv = -score.mean()
        g_aux = _aux_loss(fake_bg, fake_pairs, batch)
        g_palette = _palette_loss(fake, batch)
        g_rec = (rebuilt - batch.pixels).abs().mean()
        g_kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1 - log_variance).mean()
        opt_g.zero_grad(set_to_none=True)
        loss = g_adv + args.aux * g_aux + args.palette * g_palette + args.reconstruction * g_rec
        (loss + args.kl * g_kl).backward()
        opt_g.step()

        # 5. The moving average that ships (warming up so early steps are not frozen in).
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for mine, theirs in zip(ema.parameters(), generator.parameters(), strict=True):
                mine.lerp_(theirs, 1 - decay)

        real_acc, real_pair_acc = _accuracy(real_bg.detach(), real_pairs.detach(), batch)
        fake_bg_acc, fake_pair_acc = _accuracy(fake_bg.detach(), fake_pairs.detach(), batch)
        for key, value in (
            ("d_adv", d_adv.item()),
            ("d_aux", d_aux.item()),
            ("g_adv", g_adv.item()),
            ("g_aux", g_aux.item()),
            ("g_palette", g_palette.item()),
            ("g_rec", g_rec.item()),
            ("g_kl", g_kl.item()),
            ("real_bg_acc", real_acc),
            ("real_pair_acc", real_pair_acc),
            ("fake_bg_acc", fake_bg_acc),
            ("fake_pair_acc", fake_pair_acc),
        ):
            window.setdefault(key, []).append(value)
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            entry = {"step": done, "elapsed_s": round(time.monotonic() - began, 1)}
            entry.update({key: round(sum(v) / len(v), 4) for key, v in window.items()})
            window.clear()
            record["log"].append(entry)
            print(json.dumps(entry), flush=True)
        if done % args.checkpoint_every == 0 or done == args.steps:
            record["elapsed_s"] = time.monotonic() - began
            torch.save(
                {
                    "generator": generator.state_dict(),
                    "encoder": encoder.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "ema": ema.state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "data": data.getstate(),
                    "noise": noise.get_state(),
                    "record": record,
                    "step": done,
                },
                checkpoint,
            )
            save_generator(ema, args.out)
            (args.out / "training.json").write_text(json.dumps({**record, "step": done}, indent=1) + "\n")
            _save_samples(ema, args.work / f"samples-{done:05d}.png", seed=1)
            print(
                f"checkpoint at step {done}: {args.out / CONFIG_FILE}, {args.out / WEIGHTS_FILE}", flush=True
            )


if __name__ == "__main__":
    main()
