"""A job's forms: parsed prompt → engine request → stored params → the same engine request."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.jobs.conversions import (
    MAX_SEED,
    new_seed,
    params_to_request,
    request_to_params,
    to_generation_request,
)
from bot.prompt import PromptLimits, Request, parse
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
    not_for_the_engine = {"seed", "parts", "image_prompts"}  # image prompts arrive as a start image
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


def test_new_seeds_are_in_the_prompt_range_and_differ() -> None:
    drawn = [new_seed() for _ in range(20)]
    assert all(0 <= seed <= MAX_SEED for seed in drawn)
    assert len(set(drawn)) > 15  # 20 draws from 2**32 values essentially never repeat


def test_an_image_prompt_starts_from_its_start_image(tmp_path: Path) -> None:
    (request,) = parse("https://example.com/cat.png a cat in the style of this --iw 2 --ar 3:2")
    start, sha = tmp_path / "start.png", "c0" * 32
    generation = to_generation_request(request, seed=1, init_image=start, sources=(sha,))
    assert (generation.mode, generation.init_image, generation.image_weight) == (Mode.IMAGE, start, 2.0)
    assert (generation.sources, generation.prompt, generation.aspect_ratio) == (
        (sha,),
        request.prompt,
        (3, 2),
    )
    stored = request_to_params(generation, init="sources/start.png")
    assert params_to_request(stored, tmp_path) == dataclasses.replace(
        generation, init_image=tmp_path / "sources/start.png"
    )


def test_an_image_prompt_without_its_start_image_is_a_programming_error(tmp_path: Path) -> None:
    (request,) = parse("https://example.com/cat.png a cat")
    with pytest.raises(ValueError, match="start image"):
        to_generation_request(request, seed=1)
    with pytest.raises(ValueError, match="start image"):
        to_generation_request(Request(prompt="x"), seed=1, init_image=tmp_path / "s.png", sources=("a",))


def test_a_stored_request_comes_back_identical(tmp_path: Path) -> None:
    request = GenerationRequest(
        prompt="a fox",
        negative_prompt="blur",
        weighted_prompts=(WeightedPrompt("a fox", 2.0), WeightedPrompt("snow", -0.5)),
        aspect_ratio=(16, 9),
        seed=4_000_000_000,
        count=4,
        mode=Mode.VARIATION,
        init_image=tmp_path / "images/ab/x-2.png",
        strength=0.35,
        model="niji",
        stylize=250,
        chaos=10,
        quality=0.5,
        stop=90,
        tile=True,
        steps=12,
        cfg=6.5,
        sampler="euler_a",
    )
    params = request_to_params(request, init="images/ab/x-2.png", variation="Subtle")
    assert params["ui"] == {"variation": "Subtle"}
    assert params_to_request(params, tmp_path) == request


def test_a_text_request_has_no_source_image(tmp_path: Path) -> None:
    request = GenerationRequest(prompt="a fox", seed=1)
    assert params_to_request(request_to_params(request), tmp_path) == request
