"""Examples of the prompt language: each parameter, permutations, multi-prompts, image links, errors."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from bot.config import load_config
from bot.prompt import (
    DEFAULT_LIMITS,
    PromptError,
    PromptLimits,
    PromptPart,
    Request,
    normalise_defaults,
    parse,
)

ALIASES = PromptLimits(model_aliases=("6", "niji", "niji 6", "Dream Shaper"))


def one(
    text: str, *, limits: PromptLimits = DEFAULT_LIMITS, defaults: Mapping[str, str] | None = None
) -> Request:
    requests = parse(text, limits=limits, defaults=defaults)
    assert len(requests) == 1
    return requests[0]


def error(
    text: str, *, limits: PromptLimits = DEFAULT_LIMITS, defaults: Mapping[str, str] | None = None
) -> str:
    with pytest.raises(PromptError) as caught:
        parse(text, limits=limits, defaults=defaults)
    return str(caught.value)


# --- the plain prompt ---------------------------------------------------------------------------


def test_plain_prompt_has_midjourney_defaults_and_normalised_whitespace() -> None:
    request = one("  a lighthouse\n at   dusk ")
    assert request == Request(prompt="a lighthouse at dusk")
    assert (request.aspect_ratio, request.seed, request.stylize, request.quality) == ((1, 1), None, 100, 1.0)
    assert str(request) == "a lighthouse at dusk"


@pytest.mark.parametrize("text", ["", "   \n", "--ar 16:9", "  --seed 3 --tile"])
def test_a_prompt_without_text_is_an_error(text: str) -> None:
    assert "describe the picture" in error(text)


def test_text_after_a_leading_parameter_is_explained_as_its_value() -> None:
    assert "put the prompt text before the first `--`" in error("--ar 16:9 a cat")


def test_length_cap_counts_the_whole_text_including_parameters() -> None:
    limits = PromptLimits(max_length=20)
    assert one("a cat --ar 16:9 --c 5", limits=PromptLimits(max_length=21)).chaos == 5
    message = error("a cat --ar 16:9 --c 5", limits=limits)
    assert "21 characters" in message
    assert "limit on this bot is 20" in message


# --- each parameter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("x --ar 16:9", "aspect_ratio", (16, 9)),
        ("x --aspect 2:3", "aspect_ratio", (2, 3)),
        ("x --ar 32:18", "aspect_ratio", (16, 9)),
        ("x --ar 4:1", "aspect_ratio", (4, 1)),
        ("x --ar 1:4", "aspect_ratio", (1, 4)),
        ("x --seed 0", "seed", 0),
        ("x --seed 4294967295", "seed", 4294967295),
        ("x --chaos 100", "chaos", 100),
        ("x --c 0", "chaos", 0),
        ("x --stylize 1000", "stylize", 1000),
        ("x --s 0", "stylize", 0),
        ("x --quality .25", "quality", 0.25),
        ("x --q 0.5", "quality", 0.5),
        ("x --q 2", "quality", 2.0),
        ("x --stop 10", "stop", 10),
        ("x --tile", "tile", True),
        ("x --steps 150", "steps", 150),
        ("x --cfg 7.5", "cfg", 7.5),
        ("x --cfg 0", "cfg", 0.0),
        ("x --sampler dpmpp_2m_karras", "sampler", "dpmpp_2m_karras"),
        ("x --sampler Euler-A", "sampler", "euler_a"),
        ("x --no text, frame", "negative_prompt", "text, frame"),
        ("x --AR 3:2", "aspect_ratio", (3, 2)),
    ],
)
def test_each_parameter_sets_its_field(text: str, field: str, value: object) -> None:
    assert getattr(one(text), field) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x --ar 0:0", "`--ar` takes two whole numbers like 16:9; got `0:0`."),
        ("x --ar 16x9", "`--ar` takes two whole numbers like 16:9; got `16x9`."),
        ("x --aspect 5:1", "`--aspect` must lie between 1:4 (tall) and 4:1 (wide); got 5:1."),
        ("x --ar 1:5", "between 1:4 (tall) and 4:1 (wide)"),
        ("x --seed 4294967296", "`--seed` takes a whole number from 0 to 4294967295; got `4294967296`."),
        ("x --seed -1", "`--seed` takes a whole number from 0 to 4294967295"),
        ("x --chaos 101", "`--chaos` takes a whole number from 0 to 100; got `101`."),
        ("x --s 1001", "`--s` takes a whole number from 0 to 1000"),
        ("x --s 2.5", "`--s` takes a whole number"),
        ("x --q 3", "`--q` takes .25, .5, 1 or 2; got `3`."),
        ("x --q .3", "`--q` takes .25, .5, 1 or 2"),
        ("x --stop 9", "`--stop` takes a whole number from 10 to 100; got `9`."),
        ("x --stop 50.5", "`--stop` takes a whole number from 10 to 100"),
        ("x --steps 0", "`--steps` takes a whole number from 1 to 150"),
        ("x --steps 151", "`--steps` takes a whole number from 1 to 150"),
        ("x --cfg 31", "`--cfg` takes a number from 0 to 30, like 7.5; got `31`."),
        ("x --cfg nan", "`--cfg` takes a number from 0 to 30"),
        ("x --sampler dpm++2m", "Did you mean `dpmpp_2m`?"),
        ("x --sampler bogus", "Choose one of euler, euler_a"),
        ("x --tile please", "`--tile` takes no value; got `please`."),
        ("x --seed", "`--seed` needs a value, like `--seed 1234`."),
        ("x --no", "`--no` needs a value"),
        ("x --ar 16:9 big", "Everything after a parameter counts as its value"),
    ],
)
def test_bad_values_name_the_parameter_the_range_and_what_was_given(text: str, expected: str) -> None:
    assert expected in error(text)


def test_error_carries_the_parameter_as_typed() -> None:
    with pytest.raises(PromptError) as caught:
        parse("x --C 500")
    assert caught.value.parameter == "--C"


def test_long_dashes_from_phones_work_like_double_dashes() -> None:
    assert one("a cat \u2014ar 16:9 \u2013s 250") == one("a cat --ar 16:9 --s 250")
    # A dash that is not before a parameter name stays text.
    assert one("a red\u2014blue bird \u2014 at dusk").prompt == "a red\u2014blue bird \u2014 at dusk"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x --ar 1:1 --ar 2:3", "`--ar` is given twice; keep one."),
        ("x --ar 1:1 --aspect 2:3", "`--aspect` and `--ar` set one thing; keep one."),
        ("x --v 6 --niji", "`--niji` and `--v` set one thing"),
        ("x --tile --tile", "`--tile` is given twice"),
    ],
)
def test_a_parameter_given_twice_is_an_error(text: str, expected: str) -> None:
    assert expected in error(text, limits=ALIASES)


def test_repeat_copies_the_request_and_is_capped_by_the_setting() -> None:
    requests = parse("x --seed 5 --repeat 3")
    assert requests == [Request(prompt="x", seed=5)] * 3
    assert len(parse("x --r 6", limits=PromptLimits(max_repeat=6))) == 6
    assert "from 1 to 4 on this bot; got `5`" in error("x --r 5")
    assert "from 1 to 4" in error("x --repeat 0")


def test_iw_needs_image_links() -> None:
    assert error("a cat --iw 2") == "`--iw` needs an image URL at the start of the prompt."
    assert one("https://e.com/a.png a cat --iw 2").image_weight == 2.0
    assert "from 0 to 3" in error("https://e.com/a.png a cat --iw 3.5")


# --- model versions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "model", "canonical"),
    [
        ("x --v 6", "6", "x --version 6"),
        ("x --version 6", "6", "x --version 6"),
        ("x --niji", "niji", "x --niji"),
        ("x --niji 6", "niji 6", "x --niji 6"),
        ("x --v niji 6", "niji 6", "x --niji 6"),
        ("x --v dream   SHAPER", "Dream Shaper", "x --version Dream Shaper"),
    ],
)
def test_v_and_niji_pick_a_configured_alias(text: str, model: str, canonical: str) -> None:
    request = one(text, limits=ALIASES)
    assert request.model == model
    assert str(request) == canonical


def test_unknown_model_alias_lists_the_configured_ones() -> None:
    message = error("x --v 7", limits=ALIASES)
    assert "no model version `7`" in message
    assert "`--version 6`, `--niji`, `--niji 6`, `--version Dream Shaper`" in message
    assert "no model version `niji 5`" in error("x --niji 5", limits=ALIASES)


@pytest.mark.parametrize("text", ["x --v 6", "x --niji"])
def test_model_flags_without_configured_aliases_say_none_are_set_up(text: str) -> None:
    assert "this bot has none" in error(text)


# --- unsupported and unknown parameters ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["weird", "w", "style", "sref", "cref", "sw", "cw", "video", "personalize", "p", "fast", "relax", "turbo",
     "draft", "hd", "test", "uplight", "upbeta", "creative", "public", "stealth", "exp", "oref", "ow", "raw"],
)  # fmt: skip
def test_midjourney_parameters_we_cannot_honour_are_refused_not_ignored(name: str) -> None:
    assert f"`--{name}` is a Midjourney parameter this bot does not support" in error(f"x --{name} 1")


@pytest.mark.parametrize(
    ("flag", "suggestion"),
    [("--stylise", "--stylize"), ("--sed", "--seed"), ("--aspekt", "--aspect"), ("--chaoss", "--chaos")],
)
def test_unknown_parameter_suggests_the_closest_known_one(flag: str, suggestion: str) -> None:
    assert error(f"x {flag} 5") == f"`{flag}` is not a parameter; did you mean `{suggestion}`?"


def test_unknown_parameter_without_a_close_match_lists_the_known_ones() -> None:
    message = error("x --zzzzzz 1")
    assert "`--zzzzzz` is not a parameter; this bot knows --aspect/--ar, --seed, --no, --chaos/--c" in message


def test_a_value_glued_to_its_name_is_explained() -> None:
    assert error("x --ar16:9") == "`--ar16:9`: put a space between `--ar` and its value, like `--ar 16:9`."
    assert "`--s 250`" in error("x --s250")


def test_a_lone_double_dash_is_an_error() -> None:
    assert "lone `--`" in error("a cat -- very cute")


# --- multi-prompts ------------------------------------------------------------------------------


def test_multi_prompt_weights_go_to_parts_and_negatives_to_the_negative_prompt() -> None:
    request = one("hot dog::1.5 food::-0.5 bun --no mustard,  ketchup")
    assert request.parts == (PromptPart("hot dog", 1.5), PromptPart("food", -0.5), PromptPart("bun", 1.0))
    assert request.prompt == "hot dog, bun"
    assert request.negative_prompt == "mustard, ketchup, food"
    assert str(request) == "hot dog::1.5 food::-0.5 bun::1 --no mustard, ketchup"


def test_double_colon_without_weight_separates_concepts() -> None:
    assert one("space::ship").parts == (PromptPart("space"), PromptPart("ship"))
    assert one("a::2 b::").parts == (PromptPart("a", 2.0), PromptPart("b", 1.0))
    # Three colons: the text keeps the first one (`a:` weighted 2), and the canonical text spaces it out.
    request = one("a:::2 b")
    assert request.parts == (PromptPart("a:", 2.0), PromptPart("b"))
    assert str(request) == "a: ::2 b::1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a::-1 b::0.5", "weights add up to -0.5; the total must be positive"),
        ("a::1 b::-1", "weights add up to 0; the total must be positive"),
        ("::2 a", "A multi-prompt part is empty"),
        ("a:: ::2", "A multi-prompt part is empty"),
        ("a::2b", "a weight after `::` is a number followed by a space"),
        ("a::2 --ar 16:9::3", "`--ar` takes two whole numbers"),
        ("a::--ar 16:9", "parameters go at the end of the prompt"),
    ],
)
def test_bad_multi_prompts_are_explained(text: str, expected: str) -> None:
    assert expected in error(text)


# --- permutations -------------------------------------------------------------------------------


def test_permutations_expand_in_order() -> None:
    prompts = [request.prompt for request in parse("a {red, blue} bird {x,y}")]
    assert prompts == ["a red bird x", "a red bird y", "a blue bird x", "a blue bird y"]


def test_nested_permutations_and_escaped_commas() -> None:
    prompts = [r.prompt for r in parse("a {red\\, hot, cold {blue, green}} pepper")]
    assert prompts == ["a red, hot pepper", "a cold blue pepper", "a cold green pepper"]


def test_permutations_apply_inside_parameters() -> None:
    requests = parse("a bird --ar {16:9, 1:1} {--tile, --seed 3}")
    assert [(r.aspect_ratio, r.tile, r.seed) for r in requests] == [
        ((16, 9), True, None),
        ((16, 9), False, 3),
        ((1, 1), True, None),
        ((1, 1), False, 3),
    ]


def test_escaped_braces_are_literal_and_survive_the_canonical_text() -> None:
    request = one("a \\{curly\\} sign")
    assert request.prompt == "a {curly} sign"
    assert str(request) == "a \\{curly\\} sign"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a {red, blue bird", "A `{` is never closed"),
        ("a red} bird", "There is a `}` with no `{` before it"),
        ("{" * 9 + "a" + "}" * 9, "can nest at most 8 deep"),
    ],
)
def test_unbalanced_or_too_deep_braces_are_errors(text: str, expected: str) -> None:
    assert expected in error(text)


def test_permutation_cap_counts_expanded_prompts_times_repeat() -> None:
    limits = PromptLimits(max_permutations=6)
    assert len(parse("{a,b,c} --repeat 2", limits=limits)) == 6
    assert "makes 8 jobs" in error("{a,b,c,d} --repeat 2", limits=limits)
    assert "permutations make 8 prompts; the limit is 6" in error("{a,b}{c,d}{e,f}", limits=limits)
    # The count is known before expanding, so a huge product fails fast.
    assert "make 1073741824 prompts" in error("{a,b}" * 30)


# --- image prompts ------------------------------------------------------------------------------


def test_image_links_at_the_start_become_image_prompts() -> None:
    request = one("https://e.com/a.png <http://e.org/b.jpg> a cat --iw 0.5")
    assert request.image_prompts == ("https://e.com/a.png", "http://e.org/b.jpg")
    assert request.prompt == "a cat"
    assert str(request) == "https://e.com/a.png http://e.org/b.jpg a cat --iw 0.5"


def test_a_link_later_in_the_prompt_is_plain_text() -> None:
    request = one("a cat https://e.com/a.png")
    assert (request.image_prompts, request.prompt) == ((), "a cat https://e.com/a.png")


def test_pictures_alone_are_a_prompt() -> None:
    request = one("https://e.com/a.png https://e.com/b.png --ar 2:3")
    assert (request.image_prompts, request.prompt, request.aspect_ratio) == (
        ("https://e.com/a.png", "https://e.com/b.png"),
        "",
        (2, 3),
    )
    assert parse(str(request)) == [request]
    assert "The prompt is empty" in error("  ")


def test_attached_pictures_come_before_the_links_and_count_with_them() -> None:
    (request,) = parse("https://e.com/b.png a cat --iw 2", images=["https://cdn.test/a.png"])
    assert request.image_prompts == ("https://cdn.test/a.png", "https://e.com/b.png")
    assert request.image_weight == 2.0
    assert str(request) == "https://cdn.test/a.png https://e.com/b.png a cat --iw 2"
    (alone,) = parse("", images=["https://cdn.test/a.png"])
    assert (alone.image_prompts, alone.prompt) == (("https://cdn.test/a.png",), "")
    with pytest.raises(PromptError, match="starts from 6 images"):
        parse("https://e.com/b.png a cat", images=[f"https://cdn.test/{n}.png" for n in range(5)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ftp://e.com/a.png a cat", "Image prompts must be http or https links; got `ftp://e.com/a.png`"),
        ("https://e.com/a.png " * 6 + "a cat", "starts from 6 images; at most 5 can be used"),
        ("https:///a.png a cat", "has no host name"),
    ],
)
def test_bad_image_prompts_are_explained(text: str, expected: str) -> None:
    assert expected in error(text)


# --- canonical text -----------------------------------------------------------------------------


def test_canonical_text_uses_long_names_in_a_fixed_order_and_omits_defaults() -> None:
    request = one(
        "https://e.com/a.png a fox --sampler euler --cfg 6 --steps 20 --seed 9 --iw 2 --tile --stop 90"
        " --q .5 --s 100 --c 10 --no snow --niji --ar 3:2",
        limits=ALIASES,
    )
    assert str(request) == (
        "https://e.com/a.png a fox --aspect 3:2 --niji --no snow --chaos 10 --quality 0.5 --stop 90 --tile"
        " --iw 2 --seed 9 --steps 20 --cfg 6 --sampler euler"
    )


# --- per-user defaults --------------------------------------------------------------------------


def test_defaults_apply_only_where_the_prompt_sets_nothing() -> None:
    defaults = {"ar": "16:9", "s": "250"}
    assert one("x", defaults=defaults) == Request(prompt="x", aspect_ratio=(16, 9), stylize=250)
    request = one("x --aspect 2:3 --stylize 50", defaults=defaults)
    assert (request.aspect_ratio, request.stylize) == ((2, 3), 50)


def test_defaults_accept_long_names_dashes_and_flags() -> None:
    request = one("x", defaults={"--aspect": "3:2", "tile": "on", "niji": ""}, limits=ALIASES)
    assert (request.aspect_ratio, request.tile, request.model) == ((3, 2), True, "niji")
    assert not one("x", defaults={"tile": "off"}).tile
    # The prompt's --v overrides a default --niji: they are one parameter.
    assert one("x --v 6", defaults={"niji": ""}, limits=ALIASES).model == "6"


def test_defaults_stored_as_json_numbers_and_booleans_are_read_as_text() -> None:
    defaults = json.loads('{"s": 250, "tile": true, "seed": 7}')
    assert one("x", defaults=defaults) == Request(prompt="x", stylize=250, tile=True, seed=7)


def test_a_default_iw_is_skipped_without_image_links() -> None:
    assert one("x", defaults={"iw": "2"}).image_weight == 1.0
    assert one("https://e.com/a.png x", defaults={"iw": "2"}).image_weight == 2.0


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ({"ar": "0:0"}, "Your saved default `--ar 0:0` no longer works: `--ar` takes two whole numbers"),
        ({"weird": "5"}, "Your saved default `--weird` cannot be used"),
        ({"ar": "1:1", "aspect": "2:3"}, "set `--ar` and `--aspect`, which are the same thing"),
    ],
)
def test_bad_defaults_point_to_settings(defaults: dict[str, str], expected: str) -> None:
    message = error("x", defaults=defaults)
    assert expected in message
    assert "/settings" in message


def test_normalise_defaults_checks_and_keys_by_long_name() -> None:
    assert normalise_defaults({"ar": "16:9", "--s": " 250 ", "tile": "yes"}, PromptLimits()) == {
        "aspect": "16:9",
        "stylize": "250",
        "tile": "",
    }
    with pytest.raises(PromptError, match="`--chaos` takes a whole number from 0 to 100"):
        normalise_defaults({"chaos": "500"}, PromptLimits())


def test_limits_come_from_the_config() -> None:
    config = load_config(
        max_prompt_length=500, max_repeat=2, max_permutations=10, model_aliases={"6": "some/model"}
    )
    assert PromptLimits.from_config(config) == PromptLimits(
        max_length=500, max_repeat=2, max_permutations=10, model_aliases=("6",)
    )
