"""Prompt sides (multi-prompt weights, `--no`) and chaos on the conditioning."""

from __future__ import annotations

import pytest
import torch

from engine.backends._conditioning import conditioning_kwargs, prompt_sides
from engine.backends.diffusion import DiffusersBackend
from engine.errors import GenerationError
from engine.types import GenerationRequest, WeightedPrompt


def test_a_plain_prompt_is_one_positive_text() -> None:
    sides = prompt_sides(GenerationRequest("a fox", negative_prompt="snow"))
    assert sides.positive == (("a fox", 1.0),)
    assert sides.negative == (("snow", 1.0),)
    assert sides.plain


def test_negative_parts_count_once_with_their_weight() -> None:
    # The prompt parser appends negative parts' texts to `--no`; they must not be counted twice.
    request = GenerationRequest(
        "a fox snow",
        negative_prompt="blur, snow",
        weighted_prompts=(WeightedPrompt("a fox", 2.0), WeightedPrompt("snow", -0.5)),
    )
    sides = prompt_sides(request)
    assert sides.positive == (("a fox", 1.0),)
    assert sides.negative == (("blur", 1.0), ("snow", 0.5))
    assert not sides.plain
    only_part = GenerationRequest(
        "a fox snow",
        negative_prompt="snow",
        weighted_prompts=(WeightedPrompt("a fox"), WeightedPrompt("snow", -1)),
    )
    assert prompt_sides(only_part).negative == (("snow", 1.0),)


def test_all_negative_weights_are_refused() -> None:
    request = GenerationRequest("x", weighted_prompts=(WeightedPrompt("x", -1.0),))
    with pytest.raises(GenerationError, match="positive weight"):
        prompt_sides(request)


def test_plain_prompts_go_to_the_pipeline_as_strings(random_backend: DiffusersBackend) -> None:
    pipe = random_backend.model.text2img
    sides = prompt_sides(GenerationRequest("a fox", negative_prompt="snow"))
    assert conditioning_kwargs(pipe, sides, seeds=(1, 2), chaos=0, guidance=True) == {
        "prompt": ["a fox", "a fox"],
        "negative_prompt": ["snow", "snow"],
    }
    assert conditioning_kwargs(pipe, sides, seeds=(1,), chaos=0, guidance=False)["negative_prompt"] is None


@torch.no_grad()
def test_chaos_perturbs_each_image_by_its_own_seed(random_backend: DiffusersBackend) -> None:
    pipe = random_backend.model.text2img
    sides = prompt_sides(GenerationRequest("a fox"))
    calm = conditioning_kwargs(pipe, sides, seeds=(5, 6, 7, 8), chaos=0, guidance=True)
    wild = conditioning_kwargs(pipe, sides, seeds=(5, 6, 7, 8), chaos=100, guidance=True)
    alone = conditioning_kwargs(pipe, sides, seeds=(7,), chaos=100, guidance=True)
    embeds = wild["prompt_embeds"]
    assert embeds.shape[0] == 4
    torch.testing.assert_close(alone["prompt_embeds"][0], embeds[2])  # a cell reproduces alone
    base = pipe.encode_prompt(
        prompt="a fox", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
    )[0][0]
    spread = [float((row - base).std() / base.std()) for row in embeds]
    assert all(1.1 < s < 1.9 for s in spread)  # CHAOS_STRENGTH 1.5 of the embedding's spread
    assert not torch.equal(embeds[0], embeds[1])
    assert calm == {"prompt": ["a fox"] * 4, "negative_prompt": None}
    # the unconditional side is left alone
    torch.testing.assert_close(wild["negative_prompt_embeds"][0], wild["negative_prompt_embeds"][3])
