"""Images in, end to end: pictures attached to /imagine or /blend (served by the fake Discord's CDN on
127.0.0.1, let through by the allow-list), run on the trained tiny model; bad pictures refused in the
member's ear before anything is queued."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.store.models import Job
from engine.backend import Backend
from engine.images import crop_cell, read_recipe
from engine.simulated import SimulatedBackend
from engine.tiny.data import Scene, Shape, draw
from engine.types import Mode
from fakediscord import Attachment, FakeDiscord, InteractionRecord, MessageRecord
from tests.bot.discord_fixtures import BotWorld, custom_id, make_config, started_bot

pytestmark = pytest.mark.slow

PROMPT = "a yellow square on a black background"


def _tiny() -> Backend:
    """The trained tiny model; the bot closes its backend when it stops, so each start loads one."""
    from engine.backends import load_backend

    return load_backend("tiny", device="cpu", diffusion_upscale=False)


@pytest.fixture
def tiny_backend() -> Backend:
    return _tiny()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


_CENTRES = {
    "in the top left": (0.3, 0.3),
    "in the top right": (0.7, 0.3),
    "in the bottom left": (0.3, 0.7),
    "in the bottom right": (0.7, 0.7),
}


def _picture(colour: str = "red", background: str = "blue", where: str = "in the top left") -> Image.Image:
    """A picture the tiny model knows how to draw (its VAE renders only the dataset's colours well)."""
    centre = _CENTRES[where]
    return draw(Scene(background, (Shape("circle", colour, 1, "big", where),), (centre,)))


def _corr(a: Image.Image, b: Image.Image) -> float:
    """Correlation of two pictures at 16x16 (layout and colour, not detail)."""
    small = [
        np.asarray(x.convert("RGB").resize((16, 16), Image.Resampling.BOX), float).ravel() for x in (a, b)
    ]
    return float(np.corrcoef(small[0], small[1])[0, 1])


def _cells(message: MessageRecord) -> list[Image.Image]:
    grid = Image.open(io.BytesIO(message.attachments[0].data))
    return [crop_cell(grid, cell) for cell in range(1, 5)]


def _config(tmp_path: Path, fake: FakeDiscord, **overrides: Any) -> Any:
    values = {"model": "tiny", "fetch_allow_hosts": f"127.0.0.1:{fake.port}", **overrides}
    return make_config(tmp_path, **values)


async def _grid_of(world: BotWorld, interaction: InteractionRecord, wait_s: float = 120) -> MessageRecord:
    """The grid a deferred /imagine or /blend posts in the channel."""
    fake = world.fake
    await interaction.response(timeout=3)
    await interaction.wait_original(timeout=15)  # "thinking" ends when the job is queued
    before = {m.id for m in fake.messages_in(fake.channel) if len(m.custom_ids()) == 9}
    member = f"<@{fake.member.user.id}>"
    return await fake.wait_for_message(
        lambda m: m.id not in before and len(m.custom_ids()) == 9 and member in m.content, timeout=wait_s
    )


async def _jobs(world: BotWorld) -> int:
    async with world.services.db.session(read_only=True) as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def test_a_higher_image_weight_follows_the_attached_picture_more(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_backend: Backend
) -> None:
    fake = fake_discord
    picture = _picture()
    upload = fake.upload(_png(picture), "circle.png")
    async with started_bot(fake, _config(tmp_path, fake), tiny_backend) as world:
        grids = {}
        for weight in (0.5, 2):
            started = await fake.slash(
                "imagine", {"prompt": f"{PROMPT} --iw {weight} --seed 5", "image": upload}
            )
            grids[weight] = await _grid_of(world, started)
            assert (await started.wait_original()).ephemeral  # the "thinking" note was only the member's
    low = [_corr(picture, cell) for cell in _cells(grids[0.5])]
    high = [_corr(picture, cell) for cell in _cells(grids[2])]
    print(f"16x16 correlation with the picture: --iw 0.5 {np.round(low, 2)}, --iw 2 {np.round(high, 2)}")
    assert np.mean(high) > np.mean(low) + 0.3
    assert min(high) > max(low)

    recipe = read_recipe(grids[2].attachments[0].data)
    assert recipe is not None
    import hashlib

    assert f"Image prompts: {hashlib.sha256(upload.data).hexdigest()}" in recipe
    assert "Image weight: 2" in recipe
    assert "no image-prompt adapter" in recipe


async def test_buttons_work_after_a_restart_with_the_picture_gone_from_the_cdn(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_backend: Backend
) -> None:
    fake = fake_discord
    upload = fake.upload(_png(_picture()), "circle.png")
    config = _config(tmp_path, fake)
    async with started_bot(fake, config, tiny_backend) as world:
        started = await fake.slash("imagine", {"prompt": f"{PROMPT} --steps 4", "image": upload})
        grid = await _grid_of(world, started)
    fetched = [r for r in fake.cdn.requests if str(upload.id) in r.path]
    assert len(fetched) == 1
    fake.cdn_remove(upload)

    async with started_bot(fake, config, _tiny()) as world:
        for label in ("🔄", "V1", "U1"):
            press = await fake.click(grid, custom_id(grid, label))
            await press.response(timeout=3)
            made = await press.wait_original(timeout=15)
            await fake.wait_for(lambda _, m=made: bool(m.attachments), timeout=120, what=f"{label}'s image")
            assert "failed" not in made.content
        await world.jobs.wait_idle()
    assert [r for r in fake.cdn.requests if str(upload.id) in r.path] == fetched  # nothing fetched again


async def test_blend_makes_a_grid_related_to_both_pictures(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_discord
    monkeypatch.setattr("bot.jobs.service.new_seed", lambda: 5)  # /blend takes no --seed; pin the one drawn
    # Two things on one background, as a member would blend a subject into a scene.
    first = _picture("red", "black", "in the top left")
    second = _picture("yellow", "black", "in the bottom right")
    others = [
        _picture("white", "purple", "in the top right"),
        _picture("green", "blue", "in the bottom left"),
    ]
    uploads = [fake.upload(_png(p), f"{n}.png") for n, p in enumerate((first, second))]
    async with started_bot(fake, _config(tmp_path, fake), tiny_backend) as world:
        started = await fake.slash(
            "blend", {"image1": uploads[0], "image2": uploads[1], "dimensions": "landscape"}
        )
        grid = await _grid_of(world, started)
    cells = _cells(grid)
    assert {cell.size for cell in cells} == {(80, 56)}  # 3:2 at the model's native area
    to_first = [_corr(first, cell) for cell in cells]
    to_second = [_corr(second, cell) for cell in cells]
    to_unrelated = [_corr(other, cell) for other in others for cell in cells]
    print(
        f"blend: to the first {np.round(to_first, 2)}, the second {np.round(to_second, 2)}, "
        f"unrelated pictures {np.round(to_unrelated, 2)}"
    )
    assert np.mean(to_first) > np.mean(to_unrelated) + 0.2
    assert np.mean(to_second) > np.mean(to_unrelated) + 0.2


@pytest.mark.parametrize(
    ("upload", "prompt", "said"),
    [
        (("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"), "a cat", "is a video; attach a picture"),
        (("cat.png", b"<html>not a picture</html>", None), "a cat", "not a PNG, JPEG, GIF, WebP or BMP"),
        (("dot.png", b"", None), "a cat", "too small"),
        (("bomb.png", b"", None), "a cat", "30000×30000 pixels, more than the 40 megapixels"),
        (None, "http://127.0.0.1:9/x.png a cat", "private or local address"),
        (None, "ftp://example.com/x.png a cat", "must be http or https"),
        (None, "https://e.com/1.png " * 6 + "a cat", "at most 5 can be used"),
    ],
)
async def test_a_bad_picture_is_refused_privately_and_nothing_is_queued(
    fake_discord: FakeDiscord,
    tmp_path: Path,
    upload: tuple[str, bytes, str | None] | None,
    prompt: str,
    said: str,
) -> None:
    fake = fake_discord
    options: dict[str, str | Attachment] = {"prompt": prompt}
    if upload is not None:
        name, data, kind = upload
        if name == "dot.png":
            data = _png(Image.new("RGB", (1, 1)))
        elif name == "bomb.png":  # a header that promises 900 megapixels
            header = b"IHDR" + struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
            data = (
                b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header))
            )
        options["image"] = fake.upload(data, name, content_type=kind)
    async with started_bot(fake, _config(tmp_path, fake, model="simulated"), None) as world:
        refused = await fake.slash("imagine", options)
        await refused.response(timeout=3)
        await fake.wait_for(
            lambda _: any(said in m.content for m in [*refused.followups(), refused.original()] if m),
            timeout=3,
            what=f"the refusal saying {said!r}",
        )
        notice = next(m for m in [*refused.followups(), refused.original()] if m and said in m.content)
        assert notice.ephemeral
        assert await _jobs(world) == 0
        assert not [m for m in fake.messages_in(fake.channel) if m.attachments]


async def test_a_remix_that_keeps_the_link_fetches_nothing(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    fake, user = fake_discord, fake_discord.member
    upload = fake.upload(_png(_picture()), "circle.png")
    backend = SimulatedBackend(seconds=0.05)
    async with started_bot(fake, _config(tmp_path, fake, model="simulated"), backend) as world:
        started = await fake.slash("imagine", {"prompt": "a barn --ar 3:2", "image": upload}, user=user)
        grid = await _grid_of(world, started, wait_s=15)
        fake.cdn_remove(upload)  # the link is dead from here on

        panel = await (await fake.slash("settings", user=user)).wait_original()
        await (await fake.click(panel, "ibset:remix:on", user=user)).response(timeout=3)
        opened = await fake.click(grid, custom_id(grid, "V2"), user=user)
        await opened.response(timeout=3)
        assert opened.modal is not None
        field = opened.modal["components"][0]["components"][0]
        link = field["value"].split()[0]
        assert link.startswith(upload.url(fake.url).split("?")[0])  # the prompt keeps its picture's link
        submitted = await fake.submit_modal(
            opened, values={field["custom_id"]: f"{link} a red barn --ar 3:2"}
        )
        await submitted.response(timeout=3)
        await fake.wait_for(lambda _: len(backend.calls) == 2, timeout=10, what="the remixed variation")
        await world.jobs.wait_idle()
        assert not submitted.followups()  # no refusal
    remixed = backend.calls[-1]
    assert (remixed.mode, remixed.prompt) == (Mode.VARIATION, "a red barn")
    assert len([r for r in fake.cdn.requests if str(upload.id) in r.path]) == 1
