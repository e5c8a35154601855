"""Config come from the environment and `.env`; a bad one ends the program with one sentence, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import MAX_ALIAS_LENGTH, MAX_MODEL_LENGTH, ConfigError, load_config
from bot.store.models import Job, UserPreferences

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Run from an empty directory so a developer's own .env never leaks in.
    monkeypatch.chdir(tmp_path)
    for name in ("DISCORD_TOKEN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("IMAGINE_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    config = load_config()
    assert config.data_dir == Path("data")
    assert config.discord_token is None
    assert config.database_url.startswith("sqlite+aiosqlite:///")
    assert config.database_url.endswith("/data/imaginebot.db")
    assert config.max_running_per_owner == 3
    assert config.max_waiting_per_owner == 10
    assert config.max_permutations == 40


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=from-dotenv\nIMAGINE_MODEL=tiny\nIMAGINE_MAX_REPEAT=2\n")
    monkeypatch.setenv("IMAGINE_MAX_REPEAT", "3")  # the environment wins over .env
    monkeypatch.setenv("IMAGINE_MODEL_ALIASES", '{"niji": "some/anime-model"}')
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db/imagine")
    config = load_config()
    assert config.discord_token == "from-dotenv"
    assert config.model == "tiny"
    assert config.max_repeat == 3
    assert config.model_aliases == {"niji": "some/anime-model"}
    assert config.database_url == "postgresql+asyncpg://u:p@db/imagine"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("IMAGINE_MAX_REPEAT", "99", "IMAGINE_MAX_REPEAT"),
        ("IMAGINE_DEVICE", "tpu", "IMAGINE_DEVICE"),
        ("IMAGINE_MODEL_ALIASES", "not json", "IMAGINE_MODEL_ALIASES"),
        ("IMAGINE_PROGRESS_INTERVAL_S", "fast", "IMAGINE_PROGRESS_INTERVAL_S"),
    ],
)
def test_invalid_setting_names_itself(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment):
        load_config()


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("IMAGINE_MODEL", "m" * (MAX_MODEL_LENGTH + 1), "model id or folder may be 500 characters at most"),
        ("IMAGINE_MODEL_ALIASES", f'{{"{"n" * (MAX_ALIAS_LENGTH + 1)}": "tiny"}}', "alias name may be 100"),
        ("IMAGINE_MODEL_ALIASES", f'{{"niji": "{"m" * (MAX_MODEL_LENGTH + 1)}"}}', "one alias is 501"),
    ],
)
def test_model_names_longer_than_the_database_keeps_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"^Setting {name} is invalid: .*{fragment}") as caught:
        load_config()
    assert "\n" not in str(caught.value)


def test_model_names_as_long_as_the_database_keeps_load() -> None:
    longest = "m" * MAX_MODEL_LENGTH
    config = load_config(model=longest, model_aliases={"n" * MAX_ALIAS_LENGTH: longest})
    assert config.model == longest
    assert config.model_aliases == {"n" * MAX_ALIAS_LENGTH: longest}


def test_model_name_limits_are_the_column_lengths() -> None:
    assert Job.__table__.c.model.type.length == MAX_MODEL_LENGTH
    assert UserPreferences.__table__.c.model.type.length == MAX_ALIAS_LENGTH


def test_cli_exits_2_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGINE_MAX_RUNNING_PER_OWNER", "0")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imaginebot: Setting IMAGINE_MAX_RUNNING_PER_OWNER is invalid")
    assert "\n" not in err
    assert "Traceback" not in err


def test_console_script_reports_bad_setting_without_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "IMAGINE_DEVICE": "tpu", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "IMAGINE_DEVICE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_env_example_loads_and_lists_every_setting(tmp_path: Path) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    (tmp_path / ".env").write_text(example)
    config = load_config()  # every line of the example is valid as written
    listed = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    expected = {
        field.validation_alias.choices[0] if field.validation_alias else f"IMAGINE_{name.upper()}"  # type: ignore[union-attr]
        for name, field in type(config).model_fields.items()
    }
    assert listed == expected
