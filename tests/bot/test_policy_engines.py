"""What an engine honours, checked against a parsed prompt; the per-day cap on hosted-engine images."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.policy import (
    EngineCannotHonour,
    Limits,
    QuotaExceeded,
    QuotaRuleSpec,
    QuotaScope,
    Usage,
    billed_images,
    check_engine_honours,
    check_quota,
    given_parameters,
    resolve_limits,
)
from bot.prompt import parse
from engine.backend import PARAMETERS, Capabilities
from engine.types import Mode

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOSTED = Capabilities("OpenAI gpt-image-1", frozenset({"aspect", "quality"}), edits=False, hosted=True)
GAN = Capabilities("GAN gan-tiny", frozenset({"aspect", "seed"}), edits=False, image_prompts=False)


@pytest.mark.parametrize(
    ("prompt", "given"),
    [
        ("a cat", []),
        ("a cat --ar 16:9 --q .5", ["aspect", "quality"]),
        (
            "a cat --seed 1 --no dogs --chaos 5 --s 250 --stop 50 --tile",
            ["no", "chaos", "stylize", "stop", "tile", "seed"],
        ),
        ("a cat --steps 20 --cfg 5 --sampler euler", ["steps", "cfg", "sampler"]),
        ("a cat::1 dog::-0.5", ["no"]),  # a negative part is a --no
        ("https://example.com/a.png a cat --iw 2", ["iw"]),
        ("https://example.com/a.png a cat", []),
    ],
)
def test_given_parameters_are_the_ones_set_away_from_the_defaults(prompt: str, given: list[str]) -> None:
    (request,) = parse(prompt)
    assert given_parameters(request) == given
    assert set(given) <= PARAMETERS


def test_everything_an_engine_honours_passes() -> None:
    (request,) = parse("a cat --ar 3:2 --q 2")
    check_engine_honours(request, HOSTED)
    (request,) = parse("a cat --ar 3:2 --seed 9")
    check_engine_honours(request, GAN)
    (request,) = parse("a cat --seed 1 --no dogs --chaos 5 --tile --steps 9 --cfg 2 --sampler ddim --stop 20")
    check_engine_honours(request, Capabilities("diffusers"))


def test_what_it_cannot_honour_is_refused_by_name() -> None:
    (request,) = parse("a cat --seed 1 --tile")
    with pytest.raises(EngineCannotHonour) as refused:
        check_engine_honours(request, HOSTED)
    assert str(refused.value) == "OpenAI gpt-image-1 can't honour `--tile` or `--seed`; remove them."
    (request,) = parse("https://example.com/a.png a cat --q 2")
    with pytest.raises(EngineCannotHonour, match=r"^GAN gan-tiny can't honour `--quality` or image prompts"):
        check_engine_honours(request, GAN)


def test_a_member_default_counts_as_given() -> None:
    (request,) = parse("a cat", defaults={"stylize": "250"})
    with pytest.raises(EngineCannotHonour, match="`--stylize`"):
        check_engine_honours(request, HOSTED)


def test_billed_images_are_a_hosted_engines_except_upscales() -> None:
    assert billed_images(Mode.TEXT, 4, HOSTED) == 4
    assert billed_images(Mode.VARIATION, 4, HOSTED) == 4
    assert billed_images(Mode.UPSCALE, 1, HOSTED) == 0
    assert billed_images(Mode.TEXT, 4, GAN) == 0


def test_hosted_images_per_day_are_capped_and_other_jobs_are_not() -> None:
    limits = Limits(None, None, 10, 3, "guild", images_per_day=8)
    check_quota(limits, Usage(hosted_images=4), now=NOW, new_hosted_images=4)
    with pytest.raises(QuotaExceeded, match="today's 8 hosted-engine images"):
        check_quota(limits, Usage(hosted_images=5), now=NOW, new_hosted_images=4)
    check_quota(limits, Usage(hosted_images=8), now=NOW, new_hosted_images=0)  # a diffusers job


def test_the_image_cap_resolves_like_the_other_limits() -> None:
    rules = [
        QuotaRuleSpec(QuotaScope.GUILD, None, images_per_day=20),
        QuotaRuleSpec(QuotaScope.ROLE, 7, images_per_day=40),
        QuotaRuleSpec(QuotaScope.ROLE, 8, images_per_day=None),
        QuotaRuleSpec(QuotaScope.USER, 2, images_per_day=4),
    ]
    defaults = {"default_max_waiting": 10, "default_max_running": 3}
    assert resolve_limits(rules, user_id=1, **defaults).images_per_day == 20
    assert resolve_limits(rules, user_id=1, role_ids=[7], **defaults).images_per_day == 40
    assert resolve_limits(rules, user_id=1, role_ids=[7, 8], **defaults).images_per_day is None
    assert resolve_limits(rules, user_id=2, role_ids=[7], **defaults).images_per_day == 4
