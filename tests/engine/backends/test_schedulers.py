"""`--sampler` names → schedulers built from the model's own config."""

from __future__ import annotations

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from engine.backends._schedulers import DenoisedTap, SchedulerCache, sampler_name
from engine.errors import GenerationError
from engine.types import SAMPLERS

CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "timestep_spacing": "trailing",
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_builds_and_names_itself(name: str) -> None:
    cache = SchedulerCache(EulerDiscreteScheduler.from_config(CONFIG))
    scheduler = cache.get(name)
    assert sampler_name(scheduler) == name
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's schedule is kept
    assert cache.get(name) is scheduler  # built once


def test_default_and_unknown() -> None:
    default = EulerDiscreteScheduler.from_config(CONFIG)
    cache = SchedulerCache(default)
    assert cache.get(None) is default
    assert cache.get("euler") is default
    with pytest.raises(GenerationError, match="dpmpp_2m"):
        cache.get("k_lms")


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_denoised_tap_sees_every_samplers_estimate(name: str) -> None:
    scheduler = SchedulerCache(EulerDiscreteScheduler.from_config(CONFIG)).get(name)
    scheduler.set_timesteps(4)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with DenoisedTap(scheduler) as tap:
        t = scheduler.timesteps[0]
        latents = scheduler.step(noise, t, sample, return_dict=False)[0]
    assert tap.latest is not None
    assert tap.latest.shape == latents.shape
    assert not torch.equal(tap.latest, latents)  # an estimate of the end, not the next step
    assert "step" not in vars(scheduler)  # the method is back
