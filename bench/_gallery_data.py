"""The gallery benchmark's data: 100,000 jobs of three servers and 200 members, inserted in bulk with their
images and usage rows, with a vocabulary whose words are common, rare or absent (bench/gallery.py)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import random
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from bench._photos import photo_like
from bot.policy import GalleryAccess
from bot.services import Services
from bot.store import queries as q
from bot.store.models import Base, Image, Job, JobKind, JobStatus, UsageEntry
from engine.images import encode_png

MEASURED = 1001
GUILDS = {MEASURED: 0.6, 1002: 0.3, 1003: 0.1}
"""Each server's share of the jobs."""
GUILD_MEMBERS = {MEASURED: range(0, 140), 1002: range(100, 180), 1003: range(150, 200)}
"""Which of the 200 members are in each server (some in two)."""
ASPECTS = {"1:1": 40, "16:9": 20, "2:3": 10, "3:2": 10, "9:16": 8, "4:3": 5, "3:4": 4, "21:9": 3}
MODELS = {
    "stabilityai/sdxl-turbo": 55,
    "runwayml/stable-diffusion-v1-5": 25,
    "tiny": 10,
    "openai:gpt-image-1": 10,
}
KINDS = {JobKind.IMAGINE: 72, JobKind.UPSCALE: 16, JobKind.VARIATION: 8, JobKind.REROLL: 4}
HIDDEN_SHARE = 0.025
"""Failed (60 %) and flagged (40 %) jobs on top of `--jobs`."""
# Ranked by frequency (Zipf, s = 1): the first words are in a good share of the prompts, the last in ~1 %.
_WORDS = """portrait cinematic lighting detailed landscape dramatic sunset forest city night mountains
    watercolor neon ocean castle dragon robot cat girl ancient futuristic misty golden rain painting
    photograph illustration moody vibrant soft glowing river snow desert street abstract minimalist
    surreal fantasy steampunk cyberpunk vintage retro dreamy ethereal lighthouse harbor village temple
    garden flowers autumn spring winter summer storm clouds sky stars moon galaxy nebula spaceship
    astronaut knight wizard witch elf warrior samurai ninja fox wolf owl horse whale jellyfish butterfly
    tree bridge tower cathedral library kitchen cafe market train station airport bicycle car motorcycle
    boat ship submarine volcano canyon waterfall lake island beach jungle swamp cave glacier meadow
    orchard vineyard farm barn cottage cabin mansion palace ruins statue fountain lantern candle mirror
    clock book map compass sword shield crown throne mask feather crystal gem pearl marble bronze copper
    velvet silk lace origami mosaic stained glass charcoal ink pastel gouache isometric lowpoly voxel
    pixelart anime manga comic poster bokeh macro panoramic aerial"""
VOCABULARY = _WORDS.split()
RARE_WORDS = ("axolotl", "zeppelin", "quokka", "narwhal", "pangolin")
RARE_SHARE = 0.001
"""Prompts with one of the rare words: about 20 jobs each in 100,000."""
COMMON_WORD, RARE_WORD, NO_MATCH = "cinematic", "axolotl", "xylograph"
BATCH = 5000


# --- the data ------------------------------------------------------------------------------


@dataclass
class Dataset:
    """What was inserted, as far as the measurements need it."""

    shown: int = 0
    hidden: int = 0
    images: int = 0
    member: int = 0
    """The measured member (signed in; their own page is measured)."""
    member_jobs: int = 0
    server_jobs: int = 0
    """Shown jobs of the measured server."""
    word_jobs: Counter[str] = field(default_factory=Counter)
    """Shown jobs of the measured server whose prompt holds the word (in any case)."""
    families: dict[str, None] = field(default_factory=dict)
    """Shown jobs of the measured server with children (job pages with a family tree), in order."""

    def count(self, row: dict[str, Any], parent: dict[str, Any] | None, images: int) -> None:
        self.images += images
        if row["status"] is not JobStatus.SUCCEEDED or row["flagged"]:
            self.hidden += 1
            return
        self.shown += 1
        if row["guild_id"] != MEASURED:
            return
        self.server_jobs += 1
        self.member_jobs += row["user_id"] == self.member
        self.word_jobs.update(w for w in (COMMON_WORD, RARE_WORD, NO_MATCH) if w in row["prompt"].lower())
        if parent is not None:
            self.families[parent["id"]] = None


def user_id(member: int) -> int:
    return 300_000_000_000_000_000 + member


class _Draw:
    """Seeded draws from the tables above."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._tables: dict[int, tuple[list[Any], list[float]]] = {}
        self._ranks: dict[tuple[int, float], list[float]] = {}

    def weighted(self, table: Mapping[Any, float]) -> Any:
        """A key of `table` (one of the module's), drawn in proportion to its value."""
        keys, cumulative = self._tables.setdefault(
            id(table), (list(table), list(itertools.accumulate(table.values())))
        )
        return keys[bisect.bisect(cumulative, self.rng.random() * cumulative[-1])]

    def zipf(self, items: Sequence[Any], s: float = 1.0) -> Any:
        """One of `items`, the first the likeliest: rank r drawn in proportion to 1 / r**s."""
        cumulative = self._ranks.get((len(items), s))
        if cumulative is None:
            ranks = (1 / r**s for r in range(1, len(items) + 1))
            cumulative = self._ranks[len(items), s] = list(itertools.accumulate(ranks))
        return items[bisect.bisect(cumulative, self.rng.random() * cumulative[-1])]

    def prompt(self) -> str:
        words = [self.zipf(VOCABULARY) for _ in range(self.rng.randint(4, 10))]
        if self.rng.random() < RARE_SHARE:
            words.insert(self.rng.randrange(len(words) + 1), self.rng.choice(RARE_WORDS))
        half = len(words) // 2
        return f"a {' '.join(words[:half])}, {', '.join(words[half:])}"


def write_pictures(data_dir: Path, sets: int = 4) -> list[tuple[str, list[str]]]:
    """`sets` photo-like 1024² grids and four 512² cells each, as PNGs with a recipe, as the bot keeps
    them; every image row points at one of these (thumbnails are still made per job and cell)."""
    (data_dir / "images" / "bench").mkdir(parents=True)
    pictures = []
    for n in range(sets):
        grid = f"images/bench/{n}.png"
        cells = [f"images/bench/{n}-{i}.png" for i in range(1, 5)]
        (data_dir / grid).write_bytes(encode_png(photo_like(100 + n, 1024), f"a benchmark grid --seed {n}"))
        for i, cell in enumerate(cells):
            (data_dir / cell).write_bytes(
                encode_png(photo_like(n * 4 + i, 512), f"a benchmark cell --seed {n}")
            )
        pictures.append((grid, cells))
    return pictures


# What `bot.jobs` stores in params["request"] besides the prompt, aspect, seed and kind, so that rows
# are as wide as the bot's.
_REQUEST = json.loads(
    '{"negative_prompt": "", "weighted_prompts": [], "image_weight": 1.0, "sources": [], "edit": "", '
    '"max_side": null, "model": null, "stylize": 100, "chaos": 0, "quality": 1.0, "stop": 100, '
    '"tile": false, "steps": null, "cfg": null, "sampler": null, "allow_flagged_input": false}'
)


def _request(prompt: str, aspect: str, seed: int, kind: JobKind, parent: str) -> dict[str, Any]:
    mode = {JobKind.UPSCALE: "upscale", JobKind.VARIATION: "variation"}.get(kind, "text")
    return {
        **_REQUEST,
        "prompt": prompt,
        "aspect_ratio": [int(n) for n in aspect.split(":")],
        "seed": seed,
        "count": 1 if kind is JobKind.UPSCALE else 4,
        "mode": mode,
        "strength": 0.6 if kind is JobKind.VARIATION else 0.0,
        "parent": parent,
    }


def _job(
    draw: _Draw, n: int, at: datetime, parent: dict[str, Any] | None, kind: JobKind, guild: int
) -> dict[str, Any]:
    """One job row; a button's job (`parent` given) keeps its grid's member, prompt, aspect and model."""
    rng = draw.rng
    cell = rng.randint(1, 4) if kind in (JobKind.UPSCALE, JobKind.VARIATION) else None
    if parent is not None:
        user, prompt, aspect, model = (
            parent["user_id"],
            parent["params"]["request"]["prompt"],
            parent["aspect"],
            parent["model"],
        )
    else:
        members = GUILD_MEMBERS[guild]
        user = user_id(members[draw.zipf(range(140), 0.8) % len(members)])
        prompt, aspect, model = draw.prompt(), draw.weighted(ASPECTS), draw.weighted(MODELS)
    seed = rng.randrange(2**32)
    return {
        "id": f"{rng.getrandbits(128):032x}",
        "kind": kind,
        "parent_id": parent["id"] if parent else None,
        "parent_index": cell,
        "user_id": user,
        "user_name": f"member{user % 1000:03d}",
        "guild_id": guild,
        "channel_id": guild * 10,
        "message_id": n + 1,
        "prompt": prompt + (f" --aspect {aspect}" if aspect != "1:1" else ""),
        "params": {
            "request": _request(
                prompt, aspect, seed, kind, f"{parent['id']}#{cell}" if parent and cell else ""
            ),
            "init": None,
            "ui": {},
        },
        "model": model,
        "aspect": aspect,
        "seed": seed,
        "seeds": [seed] if kind is JobKind.UPSCALE else [seed + i for i in range(4)],
        "status": JobStatus.SUCCEEDED,
        "attempts": 1,
        "created_at": at,
        "started_at": at + timedelta(seconds=1),
        "finished_at": at + timedelta(seconds=4),
        "gpu_seconds": 3.0,
        "error": None,
        "grid_path": None,
        "flagged": False,
    }


def _outputs(row: dict[str, Any], picture: tuple[str, list[str]]) -> list[dict[str, Any]]:
    """The job's image rows: an upscale's one image, or the grid (0) and its four cells."""
    grid, cells = picture
    if row["kind"] is JobKind.UPSCALE:
        made = [(1, row["seed"], 1024, grid)]
    else:
        made = [(0, None, 1024, grid)] + [(i, row["seed"] + i - 1, 512, cells[i - 1]) for i in range(1, 5)]
    return [
        {"job_id": row["id"], "index": i, "seed": seed, "width": side, "height": side, "path": path}
        for i, seed, side, path in made
    ]


def job_batches(
    count: int, now: datetime, pictures: list[tuple[str, list[str]]], dataset: Dataset
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Rows of jobs, their images and their usage, oldest first, `BATCH` jobs at a time."""
    draw = _Draw(7)
    rng = draw.rng
    total = count + round(count * HIDDEN_SHARE)
    hidden = set(rng.sample(range(total), total - count))
    ages = sorted((rng.random() * 365 * 24 * 3600 for _ in range(total)), reverse=True)
    grids: dict[int, deque[dict[str, Any]]] = {guild: deque(maxlen=300) for guild in GUILDS}
    dataset.member = user_id(GUILD_MEMBERS[MEASURED][12])
    jobs: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    for n, age in enumerate(ages):
        guild, kind = draw.weighted(GUILDS), draw.weighted(KINDS)
        parent = rng.choice(grids[guild]) if kind is not JobKind.IMAGINE and grids[guild] else None
        row = _job(draw, n, now - timedelta(seconds=age), parent, kind if parent else JobKind.IMAGINE, guild)
        if n in hidden and rng.random() < 0.6:
            row.update(status=JobStatus.FAILED, error="the GPU ran out of memory")
        row["flagged"] = n in hidden and row["status"] is JobStatus.SUCCEEDED
        made = _outputs(row, rng.choice(pictures)) if row["status"] is JobStatus.SUCCEEDED else []
        if made:
            row["grid_path"] = made[0]["path"]
            usage.append(
                {
                    "job_id": row["id"],
                    "user_id": row["user_id"],
                    "guild_id": guild,
                    "at": row["finished_at"],
                    "gpu_seconds": row["gpu_seconds"],
                    "jobs": 1,
                    "images": 1 if row["kind"] is JobKind.UPSCALE else 4,
                    "hosted": row["model"].startswith("openai:"),
                }
            )
        if made and row["kind"] is not JobKind.UPSCALE and not row["flagged"]:
            grids[guild].append(row)
        dataset.count(row, parent, len(made))
        jobs.append(row)
        images += made
        if len(jobs) == BATCH:
            yield jobs, images, usage
            jobs, images, usage = [], [], []
    if jobs:
        yield jobs, images, usage


async def populate(services: Services, count: int, now: datetime) -> Dataset:
    """Insert the jobs, a batch per transaction; open the measured server's gallery to its members."""
    dataset = Dataset()
    pictures = await asyncio.to_thread(write_pictures, services.config.data_dir)
    batches = job_batches(count, now, pictures, dataset)
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        async with services.db.session() as session:
            for table, rows in zip((Job, Image, UsageEntry), batch, strict=True):
                await session.execute(insert(Base.metadata.tables[table.__tablename__]), rows)
    async with services.db.session() as session:
        await q.update_guild_rules(session, MEASURED, gallery=GalleryAccess.MEMBERS)
    if services.db.engine.dialect.name == "postgresql":
        # Autovacuum analyzes a table that grew this much within a minute or so; do it now.
        async with services.db.engine.connect() as connection:
            await (await connection.execution_options(isolation_level="AUTOCOMMIT")).execute(text("ANALYZE"))
    return dataset
