"""From a parsed prompt to the engine's request."""

from __future__ import annotations

import dataclasses
import random

import pytest

from bot.prompt import PromptError, PromptLimits, Request, parse
from bot.requests import MAX_SEED, choose_seed, to_generation_request
from engine.types import GRID_SIZE, GenerationRequest, Mode, WeightedPrompt


def test_every_parsed_field_reaches_the_engine_request() -> None:
    [request] = parse(
        "fox::2 snow::-0.5 --ar 3:2 --no blur --chaos 20 --s 300 --q .5 --stop 80"
        " --tile --v 6 --steps 25 --cfg 4.5 --sampler dpmpp_2m --seed 11",
        limits=PromptLimits(model_aliases=("6",)),
    )
    generation = to_generation_request(request, seed=77)
    assert generation == GenerationRequest(
        prompt="fox",
        negative_prompt="blur, snow",
        weighted_prompts=(WeightedPrompt("fox", 2.0), WeightedPrompt("snow", -0.5)),
        aspect_ratio=(3, 2),
        seed=77,
        count=GRID_SIZE,
        mode=Mode.TEXT,
        init_image=None,
        model="6",
        stylize=300,
        chaos=20,
        quality=0.5,
        stop=80,
        tile=True,
        steps=25,
        cfg=4.5,
        sampler="dpmpp_2m",
    )


def test_no_request_field_is_left_unmapped_by_accident() -> None:
    # Each Request field is either mapped or named here on purpose; a new field must be decided on.
    not_for_the_engine = {"seed", "parts", "image_prompts", "image_weight"}
    generation_fields = {field.name for field in dataclasses.fields(GenerationRequest)}
    for field in dataclasses.fields(Request):
        assert field.name in generation_fields | not_for_the_engine, field.name


def test_a_plain_prompt_maps_to_an_unweighted_request_with_default_knobs() -> None:
    generation = to_generation_request(Request(prompt="a lighthouse"), seed=0)
    assert generation == GenerationRequest(prompt="a lighthouse", seed=0)
    assert generation.weighted_prompts == ()


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_a_seed_outside_the_prompt_range_is_a_programming_error(seed: int) -> None:
    with pytest.raises(ValueError, match="seed must be between 0 and 4294967295"):
        to_generation_request(Request(prompt="x"), seed=seed)


def test_choose_seed_keeps_the_prompt_seed_and_draws_one_otherwise() -> None:
    assert choose_seed(Request(prompt="x", seed=1234), random.Random(0)) == 1234
    drawn = [choose_seed(Request(prompt="x"), random.Random(i)) for i in range(5)]
    assert drawn == [random.Random(i).randint(0, MAX_SEED) for i in range(5)]
    assert len(set(drawn)) == 5
    assert 0 <= choose_seed(Request(prompt="x")) <= MAX_SEED


def test_image_prompts_are_refused_not_dropped() -> None:
    (request,) = parse("https://example.com/cat.png a cat in the style of this --iw 2")
    with pytest.raises(PromptError, match="Image prompts") as caught:
        to_generation_request(request, seed=1)
    assert caught.value.parameter == "--iw"
