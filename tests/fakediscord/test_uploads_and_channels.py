"""The fake's CDN and world for image input: attachment options (type 11) on slash commands,
uploads served and removed, signed links, age-restricted channels, spoiler filenames, and the
command schema Discord accepts at sync."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands
from PIL import Image

from fakediscord.harness import run_bot
from fakediscord.server import FakeDiscord, FakeDiscordError


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Seen:
    """What the throwaway bot's handlers read, for the tests to assert on."""

    data: list[bytes] = field(default_factory=list)
    attachments: list[discord.Attachment] = field(default_factory=list)
    errors: list[discord.HTTPException] = field(default_factory=list)


def make_bot(seen: Seen) -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default())

    @bot.tree.command(description="read an optional image and describe where it was sent")
    async def look(
        interaction: discord.Interaction, note: str, image: discord.Attachment | None = None
    ) -> None:
        nsfw = isinstance(interaction.channel, discord.TextChannel) and interaction.channel.is_nsfw()
        if image is None:
            await interaction.response.send_message(f"no image nsfw={nsfw}")
            return
        seen.attachments.append(image)
        try:
            data = await image.read()
        except discord.HTTPException as exc:
            seen.errors.append(exc)
            await interaction.response.send_message(f"gone {exc.status} nsfw={nsfw}")
            return
        seen.data.append(data)
        await interaction.response.send_message(f"{note}: {len(data)} bytes nsfw={nsfw}")

    @bot.tree.command(description="blend two to three images")
    async def blend(
        interaction: discord.Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
    ) -> None:
        names = [a.filename for a in (image1, image2, image3) if a is not None]
        await interaction.response.send_message(" + ".join(names))

    @bot.tree.command(description="post a spoiler image")
    async def hidden(interaction: discord.Interaction) -> None:
        file = discord.File(io.BytesIO(png(8, 4)), filename="secret.png", spoiler=True)
        await interaction.response.send_message("careful", file=file)

    @bot.tree.command(description="only in age-restricted channels", nsfw=True)
    async def adult(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok")

    async def setup_hook() -> None:
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


async def test_an_upload_reaches_the_command_as_a_discord_attachment(fake_discord: FakeDiscord) -> None:
    seen = Seen()
    image = png(64, 48)
    upload = fake_discord.upload(image, "cat.png")
    described = (upload.content_type, upload.width, upload.height, upload.size)
    assert described == ("image/png", 64, 48, len(image))
    async with run_bot(make_bot(seen), fake_discord):
        record = await fake_discord.slash("look", {"note": "a cat", "image": upload})
        reply = await record.wait_original()
        assert reply.content == f"a cat: {len(image)} bytes nsfw=False"
    assert seen.data == [image]

    # Exactly as Discord sends it: the option's value is the id, the file sits in `resolved`.
    option = next(o for o in record.data["options"] if o["name"] == "image")
    assert option == {"name": "image", "type": 11, "value": str(upload.id)}
    sent = record.data["resolved"]["attachments"][str(upload.id)]
    assert sent["url"].startswith(f"{fake_discord.url}/attachments/{upload.id}/cat.png?ex=")
    assert sent["proxy_url"] == sent["url"]
    assert {k: sent[k] for k in ("filename", "size", "content_type", "width", "height", "ephemeral")} == {
        "filename": "cat.png",
        "size": len(image),
        "content_type": "image/png",
        "width": 64,
        "height": 48,
        "ephemeral": True,
    }
    attachment = seen.attachments[0]
    assert (attachment.id, attachment.content_type, attachment.ephemeral) == (upload.id, "image/png", True)
    assert (attachment.width, attachment.height) == (64, 48)
    assert [r.status for r in fake_discord.cdn.requests] == [200]


async def test_a_file_removed_from_the_cdn_answers_404(fake_discord: FakeDiscord) -> None:
    seen = Seen()
    by_record = fake_discord.upload(png(4, 4), "one.png")
    by_url = fake_discord.upload(b"not an image", "notes.txt")
    assert (by_url.content_type, by_url.width, by_url.height) == ("text/plain", None, None)
    async with run_bot(make_bot(seen), fake_discord):
        fake_discord.cdn_remove(by_record)
        fake_discord.cdn_remove(by_url.url(fake_discord.url))
        for upload in (by_record, by_url):
            reply = await (await fake_discord.slash("look", {"note": "x", "image": upload})).wait_original()
            assert reply.content == "gone 404 nsfw=False"
    assert all(isinstance(e, discord.NotFound) for e in seen.errors)
    assert len(seen.errors) == 2
    with pytest.raises(KeyError, match="no file"):
        fake_discord.cdn_remove(123)


async def test_cdn_links_are_signed_and_typed(fake_discord: FakeDiscord) -> None:
    upload = fake_discord.upload(b"RIFF....WEBP", "photo.webp")
    unknown = fake_discord.upload(b"\x00\x01", "blob", content_type=None)
    forced = fake_discord.upload(b"GIF89a", "anim.bin", content_type="image/gif")
    types = (upload.content_type, unknown.content_type, forced.content_type)
    assert types == ("image/webp", None, "image/gif")
    assert "content_type" not in unknown.to_payload(fake_discord.url)
    async with aiohttp.ClientSession() as http:
        async with http.get(upload.url(fake_discord.url)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/webp"
            assert await response.read() == b"RIFF....WEBP"
        stripped = upload.url(fake_discord.url).split("?")[0]
        async with http.get(stripped) as response:
            assert response.status == 404
        tampered = upload.url(fake_discord.url).replace("photo.webp", "other.webp")
        async with http.get(tampered) as response:
            assert response.status == 404


async def test_attachment_options_are_checked_like_discord(fake_discord: FakeDiscord) -> None:
    one, two = fake_discord.upload(png(2, 2), "a.png"), fake_discord.upload(png(2, 2), "b.png")
    async with run_bot(make_bot(Seen()), fake_discord):
        synced = next(c for c in fake_discord.state.commands() if c["name"] == "blend")
        shape = [(o["type"], o["required"]) for o in synced["options"]]
        assert shape == [(11, True), (11, True), (11, False)]
        with pytest.raises(FakeDiscordError, match=r"requires \['image2'\]"):
            await fake_discord.slash("blend", {"image1": one})
        with pytest.raises(FakeDiscordError, match=r"fake\.upload"):
            await fake_discord.slash("blend", {"image1": one, "image2": "https://example.org/x.png"})
        reply = await (await fake_discord.slash("blend", {"image1": one, "image2": two.id})).wait_original()
        assert reply.content == "a.png + b.png"


async def test_age_restricted_channels(fake_discord: FakeDiscord) -> None:
    seen = Seen()
    before = fake_discord.add_channel("adults-only", nsfw=True)  # in GUILD_CREATE
    bot = make_bot(seen)
    async with run_bot(bot, fake_discord):
        later = fake_discord.add_channel("late-night", nsfw=True)  # CHANNEL_CREATE while running
        await fake_discord.wait_for(lambda _: bot.get_channel(later.id) is not None)
        for channel in (before, later):
            cached = bot.get_channel(channel.id)
            assert isinstance(cached, discord.TextChannel)
            assert cached.is_nsfw()
            record = await fake_discord.slash("look", {"note": "x"}, channel=channel.name)
            reply = await record.wait_original()
            assert reply.content == "no image nsfw=True"
        general = bot.get_channel(fake_discord.channel.id)
        assert isinstance(general, discord.TextChannel)
        assert not general.is_nsfw()
        reply = await (await fake_discord.slash("look", {"note": "x"})).wait_original()
        assert reply.content == "no image nsfw=False"

        # An age-restricted command is offered only in age-restricted channels.
        with pytest.raises(FakeDiscordError, match="age-restricted"):
            await fake_discord.slash("adult")
        assert (await (await fake_discord.slash("adult", channel=before)).wait_original()).content == "ok"
    with pytest.raises(ValueError, match="already has"):
        fake_discord.add_channel("adults-only")


async def test_spoiler_filenames_are_kept(fake_discord: FakeDiscord) -> None:
    async with run_bot(make_bot(Seen()), fake_discord):
        message = await (await fake_discord.slash("hidden")).wait_original()
    attachment = message.attachment()
    assert attachment.filename == "SPOILER_secret.png"
    assert attachment.spoiler
    # A posted image is described as Discord describes it: real type and size, not octet-stream.
    payload: dict[str, Any] = attachment.to_payload(fake_discord.url)
    assert (payload["content_type"], payload["width"], payload["height"]) == ("image/png", 8, 4)
    assert "ephemeral" not in payload


async def test_a_deleted_message_takes_its_files_off_the_cdn(fake_discord: FakeDiscord) -> None:
    async with run_bot(make_bot(Seen()), fake_discord):
        message = await (await fake_discord.slash("hidden")).wait_original()
        url = message.attachment().url(fake_discord.url)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200
            fake_discord.delete_message(message)
            async with http.get(url) as response:
                assert response.status == 404


async def test_sync_rejects_a_schema_discord_rejects(fake_discord: FakeDiscord) -> None:
    errors: list[discord.HTTPException] = []
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    bad = {
        "name": "blend",
        "description": "x",
        "type": 1,
        "options": [
            {"type": 11, "name": "image1", "description": "first", "required": False},
            {"type": 11, "name": "image2", "description": "second", "required": True},
        ],
    }

    async def setup_hook() -> None:
        assert bot.application_id is not None
        try:
            await bot.http.bulk_upsert_global_commands(bot.application_id, [bad])
        except discord.HTTPException as exc:
            errors.append(exc)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    async with run_bot(bot, fake_discord, require_sync=False):
        pass
    assert [(e.status, e.code) for e in errors] == [(400, 50035)]
    assert "Required options must be placed before non-required options" in str(errors[0])
    assert [v.kind for v in fake_discord.state.violations] == ["invalid_command"]
    assert fake_discord.state.commands() == []
