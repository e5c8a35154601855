from __future__ import annotations

from pathlib import Path

from bot.job_records import params_to_request, request_to_params
from engine.types import GenerationRequest, Mode, WeightedPrompt


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
