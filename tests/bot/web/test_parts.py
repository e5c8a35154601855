"""The gallery's parts on their own: its secret, thumbnails, the search's query string, the charts."""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from PIL import Image

from bot.services import open_services
from bot.web import AccessDenied, GalleryKeys, GalleryUnavailable, serve_gallery
from bot.web._charts import Bar, columns_chart, rows_chart
from bot.web._filters import MAX_WORDS, Filters
from bot.web._thumbs import Size, Thumbnails
from engine.simulated import SimulatedBackend
from tests.bot.discord_fixtures import make_config


def test_the_secret_is_made_once_into_the_data_dir_readable_by_the_bot_alone(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = GalleryKeys.load(config)
    secret = tmp_path / "web-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    token = first.link_token(guild_id=1, user_id=2, name="a", admin=False, now=time.time(), ttl_s=60)
    # A restart reads the same secret: links made before it still open.
    assert GalleryKeys.load(config).open_link(token, now=time.time())[0].user_id == 2
    # IMAGINE_WEB_SECRET wins over the file; links signed with the other secret are refused.
    chosen = GalleryKeys.load(make_config(tmp_path, web_secret="an operator's own secret"))
    with pytest.raises(AccessDenied, match="bad signature"):
        chosen.open_link(token, now=time.time())
    with pytest.raises(ValueError, match="at least 16 bytes"):
        GalleryKeys(b"short")


async def test_thumbnails_shrink_to_their_size_once_even_when_asked_together(tmp_path: Path) -> None:
    source = tmp_path / "big.png"
    Image.new("RGB", (1600, 900), (10, 120, 200)).save(source)
    thumbnails = Thumbnails(tmp_path / "thumbs")
    try:
        paths = await asyncio.gather(*(thumbnails.get(source, "abcd-0", Size.CARD) for _ in range(5)))
        page = await thumbnails.get(source, "abcd-0", Size.PAGE)
    finally:
        thumbnails.close()
    assert len(set(paths)) == 1
    with Image.open(paths[0]) as card, Image.open(page) as main:
        assert (card.format, card.size) == ("WEBP", (384, 216))
        assert main.size == (1024, 576)
    assert sorted(p.name for p in (tmp_path / "thumbs" / "ab").iterdir()) == [
        "abcd-0-m.webp",
        "abcd-0-t.webp",
    ]


def test_a_search_survives_the_trip_through_its_query_string() -> None:
    words = " ".join(f"w{i}" for i in range(MAX_WORDS + 2))
    filters = Filters.parse(
        {"q": words, "ar": "16:9", "model": "tiny", "member": "42", "since": "2026-01-02"}
    )
    assert filters.words == tuple(f"w{i}" for i in range(MAX_WORDS))
    assert filters.problems == (f"Only the first {MAX_WORDS} words are searched.",)
    again = Filters.parse(dict(parse_qsl(filters.query_string())))
    assert (again.aspect, again.model, again.member, str(again.since)) == ("16:9", "tiny", 42, "2026-01-02")
    bad = Filters.parse(
        {"member": "99999999999999999999", "until": "tomorrow", "ar": "wide", "before": "junk"}
    )
    assert (bad.member, bad.until, bad.aspect, bad.before) == (None, None, None, None)
    assert len(bad.problems) == 3


def test_charts_escape_names_and_mark_quotas() -> None:
    rows = rows_chart("t", [Bar("<script>x</script>", 3, limit=2), Bar("bob", 1)], unit="jobs").svg
    assert "<script>" not in rows
    assert "&lt;script&gt;" in rows
    assert rows.count('class="quota"') == 1
    assert rows.count('class="bar over"') == 1
    columns = columns_chart("t", [Bar(f"2026-11-{day:02}", day) for day in range(1, 31)], unit="jobs").svg
    assert columns.count("<rect") == 30
    heights = [float(part.split('"')[0]) for part in columns.split('height="')[2:]]
    assert heights == sorted(heights)  # taller columns for bigger values


async def test_a_taken_port_is_one_sentence_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(tmp_path, web_port=port)
        async with open_services(config, backend=SimulatedBackend()) as services:
            with pytest.raises(GalleryUnavailable, match=f"127.0.0.1:{port}.*IMAGINE_WEB_PORT"):
                async with serve_gallery(services):
                    pass
