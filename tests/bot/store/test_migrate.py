"""The Alembic history: applies, reverts, matches the models, never blocks the event loop."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from bot.cli import main as cli_main
from bot.config import Config
from bot.store.db import create_engine
from bot.store.errors import MigrationError
from bot.store.migrate import current_revision, downgrade, head_revision, main, upgrade
from bot.store.models import Base, utcnow
from migrations import MIGRATIONS_DIR

TABLES = {"jobs", "images", "guild_settings", "quota_rules", "usage", "user_settings"}


async def _inspect(url: str) -> tuple[set[str], list[object]]:
    """Table names, and what autogenerate would change to make the database match the models."""

    def read(connection: Connection) -> tuple[set[str], list[object]]:
        tables = set(inspect(connection).get_table_names())
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return tables, compare_metadata(context, Base.metadata)

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def test_fresh_database_migrates_to_head_and_matches_the_models(db_url: str) -> None:
    report = await upgrade(db_url)

    assert (report.before, report.after) == (None, head_revision())
    assert report.changed
    assert report.steps
    assert report.steps[0].startswith("applied 0001")
    tables, diff = await _inspect(db_url)
    assert tables >= TABLES
    assert diff == []


async def test_second_upgrade_does_nothing(db_url: str) -> None:
    await upgrade(db_url)

    report = await upgrade(db_url)

    assert not report.changed
    assert "nothing to do" in str(report)


async def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    await upgrade(db_url)

    down = await downgrade(db_url, "base")
    tables_after_down, _ = await _inspect(db_url)
    up = await upgrade(db_url)
    tables_after_up, diff = await _inspect(db_url)

    assert (down.before, down.after) == (head_revision(), None)
    assert await current_revision(db_url) == head_revision()
    assert tables_after_down & TABLES == set()
    assert up.after == head_revision()
    assert tables_after_up >= TABLES
    assert diff == []


async def test_moderation_revision_gives_existing_servers_and_jobs_the_safe_defaults(db_url: str) -> None:
    await upgrade(db_url, "0001")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO guild_settings (guild_id, banned_words, allowed_channel_ids, "
                    "buttons_owner_only, updated_at) VALUES (1, '[]', '[]', :no, :now)"
                ),
                {"no": False, "now": utcnow()},
            )
            await connection.execute(
                text(
                    "INSERT INTO jobs (id, kind, user_id, channel_id, prompt, params, seed, seeds, "
                    "status, attempts, created_at, gpu_seconds) VALUES ('j1', 'imagine', 2, 3, 'a cat', "
                    "'{}', 7, '[]', 'succeeded', 1, :now, 0.5)"
                ),
                {"now": utcnow()},
            )
        await upgrade(db_url)
        async with engine.connect() as connection:
            rule = (await connection.execute(text("SELECT flagged_images FROM guild_settings"))).scalar_one()
            flagged = (await connection.execute(text("SELECT flagged FROM jobs"))).scalar_one()
    finally:
        await engine.dispose()
    assert (rule, bool(flagged)) == ("block", False)
    down = await downgrade(db_url, "0001")
    assert down.after == "0001"
    _, diff = await _inspect(db_url)
    assert {change[2].name for change in diff if change[0] == "remove_column"} == set()
    # Back at 0001 the models want every column added since: 0002's, 0003's and 0004's.
    added = {change[3].name for change in diff if change[0] == "add_column"}
    assert added == {"flagged", "flagged_images", "images", "hosted", "images_per_day", *GALLERY_COLUMNS}


async def test_hosted_usage_revision_keeps_old_ledger_rows_as_local_and_uncapped(db_url: str) -> None:
    await upgrade(db_url, "0002")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO usage (user_id, at, gpu_seconds, jobs) VALUES (2, :now, 1.5, 1)"),
                {"now": utcnow()},
            )
            await connection.execute(
                text("INSERT INTO quota_rules (guild_id, scope, jobs_per_day) VALUES (1, 'guild', 5)")
            )
        await upgrade(db_url)
        async with engine.connect() as connection:
            images, hosted = (await connection.execute(text("SELECT images, hosted FROM usage"))).one()
            cap = (await connection.execute(text("SELECT images_per_day FROM quota_rules"))).scalar_one()
    finally:
        await engine.dispose()
    assert (images, bool(hosted), cap) == (0, False, None)
    down = await downgrade(db_url, "0002")
    assert down.after == "0002"
    _, diff = await _inspect(db_url)
    assert {change[3].name for change in diff if change[0] == "add_column"} == {
        "images",
        "hosted",
        "images_per_day",
        *GALLERY_COLUMNS,
    }


GALLERY_COLUMNS = {"gallery", "user_name", "aspect"}


async def test_gallery_revision_keeps_servers_private_and_reads_old_jobs_aspect_ratio(db_url: str) -> None:
    await upgrade(db_url, "0003")
    engine = create_engine(db_url)
    jobs = {"j1": '{"request": {"aspect_ratio": [16, 9]}}', "j2": "{}"}
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO guild_settings (guild_id, banned_words, allowed_channel_ids, "
                    "buttons_owner_only, updated_at) VALUES (1, '[]', '[]', :no, :now)"
                ),
                {"no": False, "now": utcnow()},
            )
            for job_id, params in jobs.items():
                await connection.execute(
                    text(
                        "INSERT INTO jobs (id, kind, user_id, channel_id, prompt, params, seed, seeds, "
                        "status, attempts, created_at, gpu_seconds) VALUES (:id, 'imagine', 2, 3, 'a cat', "
                        ":params, 7, '[]', 'succeeded', 1, :now, 0.5)"
                    ),
                    {"id": job_id, "params": params, "now": utcnow()},
                )
        await upgrade(db_url)
        async with engine.connect() as connection:
            rule = (await connection.execute(text("SELECT gallery FROM guild_settings"))).scalar_one()
            rows = (
                await connection.execute(text("SELECT id, aspect, user_name FROM jobs ORDER BY id"))
            ).all()
    finally:
        await engine.dispose()
    assert rule == "off"
    assert [tuple(row) for row in rows] == [("j1", "16:9", None), ("j2", None, None)]
    down = await downgrade(db_url, "0003")
    assert down.after == "0003"
    _, diff = await _inspect(db_url)
    assert {change[3].name for change in diff if change[0] == "add_column"} == GALLERY_COLUMNS


async def test_unknown_revision_is_a_migration_error(db_url: str) -> None:
    with pytest.raises(MigrationError, match="nosuchrevision"):
        await upgrade(db_url, "nosuchrevision")


BROKEN_REVISION = '''"""broken on purpose: creates a table, then fails"""

import sqlalchemy as sa
from alembic import op

revision = "0999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    raise RuntimeError("broken on purpose")


def downgrade() -> None:
    op.drop_table("half_done")
'''


def _history_with_a_broken_revision(folder: Path) -> AlembicConfig:
    shutil.copytree(MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "0999_broken.py").write_text(BROKEN_REVISION.format(head=head_revision()))
    return AlembicConfig(str(folder / "alembic.ini"))


async def test_a_failing_revision_leaves_the_database_as_it_was(db_url: str, tmp_path: Path) -> None:
    config = _history_with_a_broken_revision(tmp_path / "migrations")

    with pytest.raises(MigrationError, match="broken on purpose"):
        await upgrade(db_url, config=config)
    tables, _ = await _inspect(db_url)

    # One transaction for the whole run: not even the first revision's tables are left behind.
    assert await current_revision(db_url) is None
    assert tables & (TABLES | {"half_done"}) == set()


async def test_upgrade_leaves_the_event_loop_free(db_url: str) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await upgrade(db_url)
    finally:
        task.cancel()
    # A blocking upgrade would let the ticker run at most once; it takes far more than 15 ms.
    assert ticks >= 3


def test_migrate_command_creates_the_database_in_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Config(data_dir=tmp_path / "data", database_url_setting=None)

    code = main(config.database_url)

    assert code == 0
    assert (tmp_path / "data" / "imaginebot.db").is_file()
    assert f"migrated from base (empty) to {head_revision()}" in capsys.readouterr().out


def test_migrate_command_explains_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(database_url_setting="nosuchdb://user:secret@host/db")

    code = main(config.database_url)

    err = capsys.readouterr().err
    assert code == 1
    assert "DATABASE_URL" in err
    assert "secret" not in err


def test_imaginebot_migrate_reads_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # away from any developer's .env
    target = tmp_path / "elsewhere" / "bot.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{target}")

    first = cli_main(["migrate"])
    second = cli_main(["migrate"])

    out = capsys.readouterr().out
    assert (first, second) == (0, 0)
    assert target.is_file()
    assert f"migrated from base (empty) to {head_revision()}" in out
    assert "nothing to do" in out


async def test_a_database_from_a_newer_version_is_refused_with_advice(db_url: str, tmp_path: Path) -> None:
    newer = _history_with_a_broken_revision(tmp_path / "migrations")
    revision = tmp_path / "migrations" / "versions" / "0999_broken.py"
    revision.write_text(revision.read_text().replace('raise RuntimeError("broken on purpose")', "pass"))
    await upgrade(db_url, config=newer)

    with pytest.raises(MigrationError, match="newer version"):
        await upgrade(db_url)

    assert await current_revision(db_url) == "0999"
