"""Request → pipeline settings: sizes, steps, guidance, early stop."""

from __future__ import annotations

import pytest

from engine.backends._family import Family, FamilyKind
from engine.backends._mapping import (
    TURBO_NEGATIVE_CFG,
    guidance_for,
    image_strength,
    img2img_steps,
    plan_for,
    size_for,
    steps_for,
    stop_iteration,
)
from engine.errors import GenerationError
from engine.types import GenerationRequest

SD = Family(FamilyKind.SD, 512, default_steps=30, default_cfg=7.5)
TURBO = Family(FamilyKind.SDXL, 512, default_steps=2, default_cfg=0.0, turbo=True, max_steps=4)


@pytest.mark.parametrize("ar", [(1, 1), (16, 9), (9, 16), (3, 2), (2, 3), (4, 1), (21, 9), (7, 5)])
def test_size_keeps_the_native_area_and_ratio_in_multiples_of_8(ar: tuple[int, int]) -> None:
    width, height = size_for(ar, SD)
    assert width % 8 == 0
    assert height % 8 == 0
    assert abs(width * height / SD.native_area - 1) < 0.08
    assert abs((width / height) / (ar[0] / ar[1]) - 1) < 0.06


def test_size_examples() -> None:
    assert size_for((1, 1), SD) == (512, 512)
    assert size_for((16, 9), SD) == (680, 384)
    assert size_for((9, 16), SD) == (384, 680)


def test_size_refuses_a_zero_side() -> None:
    with pytest.raises(GenerationError, match="16:9"):
        size_for((0, 1), SD)


def test_quality_scales_the_family_default_steps() -> None:
    assert steps_for(GenerationRequest("x", quality=1), SD) == 30
    assert steps_for(GenerationRequest("x", quality=0.5), SD) == 15
    assert steps_for(GenerationRequest("x", quality=2), SD) == 60
    assert steps_for(GenerationRequest("x", quality=0.25), TURBO) == 1
    assert steps_for(GenerationRequest("x", quality=4), TURBO) == 4  # capped for Turbo
    assert steps_for(GenerationRequest("x", steps=12, quality=4), TURBO) == 12  # explicit wins


def test_stylize_lowers_guidance_as_it_rises() -> None:
    cfgs = [
        guidance_for(GenerationRequest("x", stylize=s), SD, has_negative=False)[0]
        for s in (0, 50, 100, 500, 1000)
    ]
    assert cfgs == sorted(cfgs, reverse=True)
    assert cfgs[0] == pytest.approx(11.25)
    assert cfgs[2] == pytest.approx(7.5)
    assert cfgs[-1] == pytest.approx(3.75)


def test_turbo_runs_without_guidance_unless_no_needs_it() -> None:
    assert guidance_for(GenerationRequest("x"), TURBO, has_negative=False) == (0.0, None)
    cfg, note = guidance_for(GenerationRequest("x", negative_prompt="fog"), TURBO, has_negative=True)
    assert cfg == TURBO_NEGATIVE_CFG > 1
    assert note is not None
    assert "twice" in note


def test_explicit_cfg_that_disables_no_is_refused() -> None:
    with pytest.raises(GenerationError, match="--no"):
        guidance_for(GenerationRequest("x", cfg=1.0, negative_prompt="fog"), SD, has_negative=True)
    assert guidance_for(GenerationRequest("x", cfg=1.0), SD, has_negative=False) == (1.0, None)


def test_img2img_steps_always_run_at_least_one_step() -> None:
    for strength in (0.05, 0.1, 0.3, 0.35, 0.6, 1.0):
        for steps in (1, 2, 4, 30):
            n = img2img_steps(steps, strength)
            assert n >= steps
            assert int(n * strength) >= 1
    assert img2img_steps(30, 0.6) == 30
    with pytest.raises(GenerationError):
        img2img_steps(4, 0.0)


def test_stop_iteration() -> None:
    assert stop_iteration(20, 100) == 20
    assert stop_iteration(20, 50) == 10
    assert stop_iteration(3, 10) == 1
    with pytest.raises(GenerationError, match="10 to 100"):
        stop_iteration(20, 5)


def test_plan_combines_size_steps_and_guidance() -> None:
    plan = plan_for(GenerationRequest("x", aspect_ratio=(2, 3), quality=0.5), TURBO, has_negative=True)
    assert (plan.width, plan.height) == (416, 624)
    assert plan.steps == 1
    assert plan.cfg == TURBO_NEGATIVE_CFG
    assert len(plan.notes) == 1


def test_image_weight_keeps_more_of_the_picture_as_it_rises() -> None:
    assert [image_strength(iw) for iw in (0, 0.5, 1, 2, 3)] == [0.95, 0.825, 0.7, 0.45, 0.2]
    with pytest.raises(GenerationError, match="--iw"):
        image_strength(3.5)
