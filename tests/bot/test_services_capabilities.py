"""What the model of a job's alias honours, asked by name (no model is loaded): the bot's one way."""

from __future__ import annotations

from pathlib import Path

from bot.services import capabilities_of
from engine.backend import Capabilities
from tests.bot.discord_fixtures import make_config

DEFAULT = Capabilities("simulated", edits=False)


def test_each_alias_is_asked_of_its_own_engine(tmp_path: Path) -> None:
    aliases = {"dalle": "openai:gpt-image-1", "six": "some/model", "same": "simulated", "gone": "nosuch:x"}
    config = make_config(tmp_path, model="simulated", model_aliases=aliases)
    assert capabilities_of(config, DEFAULT, None) is DEFAULT
    assert capabilities_of(config, DEFAULT, "same") is DEFAULT
    assert capabilities_of(config, DEFAULT, "dalle").engine == "OpenAI gpt-image-1"
    assert capabilities_of(config, DEFAULT, "six").engine == "diffusers"
    # An alias whose engine is not installed: nothing offered, and the job itself fails with the reason.
    gone = capabilities_of(config, DEFAULT, "gone")
    assert (gone.engine, gone.edits, gone.image_prompts) == ("nosuch:x", False, False)
