"""The safety-check seam: which checker a setting names; the model's own one taken out of its pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import GenerationError, ModelLoadError
from engine.safety import (
    PipelineSafetyChecker,
    check_images,
    detach_pipeline_checker,
    load_safety_checker,
)
from engine.tiny import build_random_pipeline
from tests.safety_checkers import RedChecker

RED = Image.new("RGB", (64, 64), (250, 10, 10))
BLUE = Image.new("RGB", (64, 64), (10, 10, 250))


def tiny_pipeline_checker(*, flags_everything: bool) -> tuple[Any, Any]:
    """A `StableDiffusionSafetyChecker` of CLIP's shape at toy size, and its feature extractor.

    Its concept thresholds decide alone: -2 is below any cosine similarity (everything is flagged),
    2 above any (nothing is)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(
        vision_config={**small, "image_size": 32, "patch_size": 4},
        text_config={**small, "vocab_size": 49408},
        projection_dim=32,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-2.0 if flags_everything else 2.0)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


def pipeline_with_checker(*, flags_everything: bool = True) -> Any:
    """The tiny random pipeline, shipping a safety checker as Stable Diffusion 1.5 does."""
    from diffusers import StableDiffusionPipeline

    checker, extractor = tiny_pipeline_checker(flags_everything=flags_everything)
    components = {
        **build_random_pipeline().components,
        "safety_checker": checker,
        "feature_extractor": extractor,
    }
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_model_means_the_pipelines_own_checker_taken_out_of_the_pipeline() -> None:
    pipe = pipeline_with_checker()
    own = pipe.safety_checker

    checker = load_safety_checker("model", pipe)

    assert isinstance(checker, PipelineSafetyChecker)
    assert checker.checker is own
    assert checker.name == "StableDiffusionSafetyChecker (the model's own)"
    assert checker.flagged([RED, BLUE]) == [True, True]
    # The pipeline no longer checks (and blacks out) by itself, nor do the pipelines made from it.
    assert pipe.safety_checker is None
    assert pipe.config.safety_checker == (None, None)
    from diffusers import AutoPipelineForImage2Image

    assert AutoPipelineForImage2Image.from_pipe(pipe).safety_checker is None


def test_the_pipelines_checker_answers_per_image() -> None:
    checker, extractor = tiny_pipeline_checker(flags_everything=False)
    assert PipelineSafetyChecker(checker, extractor, name="x").flagged([RED, BLUE, RED]) == [False] * 3
    assert PipelineSafetyChecker(checker, extractor, name="x").flagged([]) == []


def test_the_checker_leaves_the_images_it_is_given_as_they_were() -> None:
    checker, extractor = tiny_pipeline_checker(flags_everything=True)
    red = RED.copy()
    PipelineSafetyChecker(checker, extractor, name="x").flagged([red])
    assert np.asarray(red).max() == 250


def test_model_without_a_shipped_checker_is_none() -> None:
    pipe = build_random_pipeline()
    assert load_safety_checker("model", pipe) is None
    assert load_safety_checker("model") is None  # no pipeline at all (the simulated engine)


def test_none_drops_even_the_models_own_checker() -> None:
    pipe = pipeline_with_checker()
    assert load_safety_checker("none", pipe) is None
    assert pipe.safety_checker is None


def test_a_path_names_a_factory_and_the_models_own_checker_leaves_the_pipeline() -> None:
    pipe = pipeline_with_checker()
    checker = load_safety_checker("tests.safety_checkers:flag_red", pipe)
    assert isinstance(checker, RedChecker)
    assert checker.flagged([RED, BLUE]) == [True, False]
    assert pipe.safety_checker is None


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("strict", "got 'strict'"),
        ("tests.no_such_module:make", "module 'tests.no_such_module' cannot be imported"),
        ("tests.safety_checkers:no_such_factory", "has no callable 'no_such_factory'"),
        ("tests.safety_checkers:RED_THRESHOLD", "has no callable 'RED_THRESHOLD'"),
        ("builtins:object", "builtins:object returned object, which has no `name` and `flagged(images)`"),
    ],
)
def test_a_bad_setting_is_one_sentence_saying_what_it_takes(setting: str, says: str) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_safety_checker(setting)
    message = str(caught.value)
    assert message.startswith("IMAGINE_SAFETY_CHECKER takes `model`, `none`, or `package.module:attribute`")
    assert says in message


def test_check_images_is_empty_without_a_checker_and_refuses_a_wrong_count() -> None:
    assert check_images(None, [RED]) == ()
    assert check_images(RedChecker(), [RED, BLUE]) == (True, False)

    class Short:
        name = "short"

        def flagged(self, images: Any) -> list[bool]:
            return [False]

    with pytest.raises(GenerationError, match="answered for 1 images instead of 2"):
        check_images(Short(), [RED, BLUE])


def test_detach_leaves_a_pipeline_without_a_checker_alone() -> None:
    pipe = build_random_pipeline()
    assert detach_pipeline_checker(pipe) is None
    assert pipe.safety_checker is None


def test_the_pipelines_checker_runs_in_half_precision_as_on_a_gpu() -> None:
    checker, extractor = tiny_pipeline_checker(flags_everything=True)
    half = PipelineSafetyChecker(checker.to(torch.float16), extractor, name="x")
    assert half.flagged([RED, BLUE]) == [True, True]
