"""The bot's configuration, read once from the environment and `.env` (not the /settings panel).

Every knob has the `IMAGINE_` prefix except the two names the ecosystem already uses
(`DISCORD_TOKEN`, `DATABASE_URL`). `.env.example` lists and explains each one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

__all__ = ["Config", "ConfigError", "load_config"]

DEFAULT_MODEL = "stabilityai/sdxl-turbo"
# The database columns that keep them (bot/store/models.py): PostgreSQL refuses longer values mid-job.
MAX_MODEL_LENGTH = 500
"""A model id or folder, as each job row records it."""
MAX_ALIAS_LENGTH = 100
"""An alias name, as a member's /settings keep it."""


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it and says what is expected."""


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMAGINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,
    )

    # --- Discord --------------------------------------------------------------------------
    discord_token: str | None = Field(default=None, validation_alias=AliasChoices("DISCORD_TOKEN"))
    dev_guild_id: int | None = None
    """Sync slash commands to this guild only (instant) instead of globally (up to an hour)."""
    shards: int | None = Field(default=None, ge=1)
    """Gateway shards to run; None = as many as Discord recommends for the bot's size."""

    # --- storage --------------------------------------------------------------------------
    data_dir: Path = Path("data")
    database_url_setting: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))

    # --- engine ---------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """A Hugging Face hub id, a local diffusers folder, or `tiny` (the built-in offline model)."""
    model_aliases: dict[str, str] = Field(default_factory=dict)
    """`--v`/`--niji` choices, as JSON: {"6": "stabilityai/sdxl-turbo", "niji": "/models/anime"}."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    """auto, cpu, mps, cuda, or one GPU of several: cuda:1."""
    diffusion_upscale: bool = True
    """U buttons run a diffusion image-to-image pass over the enlarged image; off = plain resampling."""
    max_side: int = Field(default=2048, ge=64, le=16384)
    """The longest side, in pixels, of what Upscale (Subtle/Creative), Zoom Out, Pan, Make Square and
    Vary (Region) make; a press that would pass it is refused before it is queued."""
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    """The key of `IMAGINE_MODEL=openai:<model>` (and of compatible servers that want one)."""
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    """A server that speaks OpenAI's Images API; None = OpenAI's own."""
    hosted_timeout_s: float = Field(default=180.0, gt=0, le=3600)
    """How long one call to a hosted engine may take before the job fails."""
    hosted_retries: int = Field(default=2, ge=0, le=10)
    """How often a hosted engine's client retries a 429 (waiting its `Retry-After`) or a 5xx."""
    inception_weights: Path | None = None
    """`imaginebot eval`: the FID Inception-v3 weights file for real FID/IS; None = the shapes network."""

    # --- scaling out ------------------------------------------------------------------------
    queue_url: str | None = None
    """redis://… : jobs run on `imaginebot worker` processes through Redis; None = in this process."""
    queue_prefix: str = Field(default="imaginebot", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    """The prefix of every Redis key, so several bots can share one Redis."""
    lease_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    """A worker that has not renewed its claim on a job this long is taken for dead; the job runs again."""

    # --- images in (attachments and links in prompts) --------------------------------------
    max_image_mb: float = Field(default=10.0, gt=0, le=200)
    """The largest image a member may give; a bigger one is refused while it downloads."""
    max_image_pixels: int = Field(default=40_000_000, ge=64 * 64)
    """Width x height above which an image is refused unread (decompression bombs)."""
    fetch_timeout_s: float = Field(default=2.5, gt=0, le=120)
    """The whole download of one image, connection included; a member hears back within about this long."""
    fetch_connect_timeout_s: float = Field(default=1.5, gt=0, le=60)
    fetch_allow_hosts: str = ""
    """Comma-separated `host` or `host:port` let through the private-address check (tests, private CDNs)."""
    safety_checker: str = Field(default="model", pattern=r"^(model|none|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")
    """What checks images in and out (`engine.safety`): `model` (the model's own checker, if it ships
    one), `none`, or `package.module:attribute` naming a zero-argument callable returning a checker."""

    # --- limits ---------------------------------------------------------------------------
    max_prompt_length: int = Field(default=2000, ge=10)
    max_repeat: int = Field(default=4, ge=1, le=40)
    max_permutations: int = Field(default=40, ge=1, le=200)
    max_running_per_owner: int = Field(default=3, ge=1)
    max_waiting_per_owner: int = Field(default=10, ge=0)
    attachment_limit_mb: float = Field(default=10.0, gt=0)

    # --- Discord presentation -------------------------------------------------------------
    progress_interval_s: float = Field(default=2.0, ge=0.5)
    discord_image_format: Literal["webp", "jpeg", "png"] = "webp"
    """The grid posted to Discord (recipe in EXIF UserComment for WebP/JPEG); the data dir keeps PNGs."""

    # --- web gallery -----------------------------------------------------------------------
    web_host: str = "127.0.0.1"
    """The address the web gallery listens on (0.0.0.0 for every interface, behind your proxy)."""
    web_port: int = Field(default=8080, ge=0, le=65535)
    """The web gallery's port; 0 = no gallery (and `/gallery` says so)."""
    web_url: str | None = None
    """The gallery's public address, as members reach it (https://gallery.example.org), used in
    `/gallery` links; None = http://web_host:web_port."""
    web_secret: SecretStr | None = None
    """Signs gallery links and sessions; None = a random one generated once into the data dir."""
    web_link_ttl_s: float = Field(default=900.0, ge=10, le=7 * 24 * 3600)
    """How long a `/gallery` link may be opened after it was made."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    health_interval_s: float = Field(default=600.0, ge=0)
    """Seconds between the log's health lines (event-loop lag, memory); 0 = none."""

    @field_validator("queue_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("it must be a Redis URL like redis://host:6379/0 (or rediss://, unix://)")
        return value

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("it must be an http(s) address like https://gallery.example.org")
        return value.rstrip("/")

    @field_validator("model")
    @classmethod
    def _model_fits_the_database(cls, value: str) -> str:
        if len(value) > MAX_MODEL_LENGTH:
            raise ValueError(
                f"a model id or folder may be {MAX_MODEL_LENGTH} characters at most; this one is {len(value)}"
            )
        return value

    @field_validator("model_aliases")
    @classmethod
    def _aliases_fit_the_database(cls, value: dict[str, str]) -> dict[str, str]:
        for name, model in value.items():
            if len(name) > MAX_ALIAS_LENGTH:
                raise ValueError(
                    f"an alias name may be {MAX_ALIAS_LENGTH} characters at most; one is {len(name)}"
                )
            if len(model) > MAX_MODEL_LENGTH:
                raise ValueError(
                    f"a model id or folder may be {MAX_MODEL_LENGTH} characters at most; "
                    f"the model of one alias is {len(model)}"
                )
        return value

    @field_validator("discord_token")
    @classmethod
    def _blank_token_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def database_url(self) -> str:
        """`DATABASE_URL`, or an SQLite file in the data dir."""
        if self.database_url_setting:
            return self.database_url_setting
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imaginebot.db').resolve()}"

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    @property
    def fetch_allowed(self) -> frozenset[str]:
        """`fetch_allow_hosts` as lower-case `host` / `host:port` entries."""
        return frozenset(
            entry.strip().lower() for entry in self.fetch_allow_hosts.split(",") if entry.strip()
        )

    @property
    def gallery_url(self) -> str:
        """Where members reach the web gallery: `web_url`, or the address it listens on."""
        if self.web_url is not None:
            return self.web_url
        host = f"[{self.web_host}]" if ":" in self.web_host else self.web_host
        return f"http://{host}:{self.web_port}"

    @property
    def attachment_limit_bytes(self) -> int:
        return int(self.attachment_limit_mb * 1024 * 1024)


_ENV_NAMES = {"discord_token": "DISCORD_TOKEN", "database_url_setting": "DATABASE_URL"}


def _env_name(field: str) -> str:
    return _ENV_NAMES.get(field, f"IMAGINE_{field.upper()}")


def load_config(**overrides: object) -> Config:
    """Read the configuration; raise `ConfigError` with one sentence naming the bad one."""
    try:
        return Config(**overrides)  # type: ignore[arg-type]
    except _SourceError as exc:
        # Raised for values that must be JSON (lists, dicts) but are not.
        match = re.search(r'field "(\w+)"', str(exc))
        field = match.group(1) if match else "?"
        raise ConfigError(
            f"Setting {_env_name(field)} is invalid: it must be JSON, "
            'like {"niji": "some/model"} for a mapping or ["a", "b"] for a list.'
        ) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        given = error.get("input")
        raise ConfigError(
            f"Setting {_env_name(field)} is invalid: {error['msg'].lower()} (got {given!r})."
        ) from None
