"""The OpenAI engine: grids, sizes, quality, progress, variations, upscales and every failure, with the
real `openai` client talking to the loopback fake Images API."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from engine.backends import capabilities, load_backend
from engine.edits import CANNOT_PAINT
from engine.errors import (
    CredentialsRejected,
    GenerationError,
    ImageFlagged,
    JobCancelled,
    ModelLoadError,
    PromptRefused,
)
from engine.types import VARY_STRONG, VARY_SUBTLE, GenerationRequest, Mode
from tests.engine.backends.hosted.conftest import load, run
from tests.fakeopenai import REFUSED_WORD, FakeImagesAPI, ModelRules


async def test_a_grid_is_one_call_with_n_4_streaming_partial_images_as_previews(api: FakeImagesAPI) -> None:
    backend = await load()
    try:
        result, events = await run(backend, GenerationRequest(prompt="a lighthouse at dusk", seed=5))
    finally:
        await asyncio.to_thread(backend.close)
    (call,) = api.image_requests()
    assert call.endpoint == "generations"
    assert call.params == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse at dusk",
        "n": 4,
        "size": "1024x1024",
        "quality": "auto",
        "stream": True,
        "partial_images": 2,
    }
    assert len(result.images) == 4
    assert {image.size for image in result.images} == {(1024, 1024)}
    assert result.model == "openai:gpt-image-1"
    assert result.extra["engine"].startswith("OpenAI gpt-image-1 (takes no seed")
    previews = [event for event in events if event.preview is not None]
    assert previews, "the streamed partial images should have become previews"
    assert all(event.total == 3 and 1 <= event.step <= 2 for event in previews)
    assert max(previews[0].preview.size) <= 256  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("aspect", "asked", "kept"),
    [
        ((16, 9), "1536x1024", (1536, 864)),
        ((2, 3), "1024x1536", (1024, 1536)),
        ((1, 2), "1024x1536", (768, 1536)),
    ],
)
async def test_ar_asks_for_the_nearest_size_and_the_images_keep_the_prompts_ratio(
    api: FakeImagesAPI, aspect: tuple[int, int], asked: str, kept: tuple[int, int]
) -> None:
    backend = await load()
    try:
        result, _ = await run(backend, GenerationRequest(prompt="a field", aspect_ratio=aspect))
    finally:
        await asyncio.to_thread(backend.close)
    assert api.image_requests()[0].params["size"] == asked
    assert (result.width, result.height) == kept
    assert result.width * aspect[1] == result.height * aspect[0]


@pytest.mark.parametrize(("q", "level"), [(0.25, "low"), (0.5, "medium"), (1.0, "auto"), (2.0, "high")])
async def test_q_maps_to_the_models_quality_levels(api: FakeImagesAPI, q: float, level: str) -> None:
    backend = await load()
    try:
        result, _ = await run(backend, GenerationRequest(prompt="a field", quality=q))
    finally:
        await asyncio.to_thread(backend.close)
    assert api.image_requests()[0].params["quality"] == level
    assert result.extra["quality"] == level


async def test_a_model_limited_to_n_1_gets_four_calls_at_once(api: FakeImagesAPI) -> None:
    api.models["one-at-a-time"] = ModelRules(max_n=1)
    api.delay_s = 1.5
    backend = await load("openai:one-at-a-time,max_n=1,stream=false")
    try:
        began = time.monotonic()
        result, events = await run(backend, GenerationRequest(prompt="four boats"))
        took = time.monotonic() - began
    finally:
        await asyncio.to_thread(backend.close)
    calls = api.image_requests()
    assert [call.params["n"] for call in calls] == [1, 1, 1, 1]
    assert max(c.at for c in calls) - min(c.at for c in calls) < 0.5, "the four calls should start together"
    # One after another they would take 4 x 1.5 s; margin for a busy shared CPU.
    assert took < 2.5 * api.delay_s, f"four concurrent 1.5 s calls took {took:.2f} s"
    assert len(result.images) == 4
    # No partial images without streaming: progress is the elapsed time (total 0).
    assert events
    assert all(event.total == 0 and event.preview is None for event in events)


async def test_gpt_image_2_takes_a_free_size_of_the_prompts_shape(api: FakeImagesAPI) -> None:
    api.models["gpt-image-2"] = ModelRules(sizes=frozenset({"1360x768"}))
    backend = await load("openai:gpt-image-2")
    try:
        result, _ = await run(backend, GenerationRequest(prompt="wide", aspect_ratio=(16, 9)))
    finally:
        await asyncio.to_thread(backend.close)
    assert api.image_requests()[0].params["size"] == "1360x768"  # multiples of 16, about a megapixel
    assert (result.width, result.height) == (1360, 765)


def _cell(tmp_path: Path) -> Path:
    cell = Image.new("RGB", (1024, 1024), (200, 30, 30))
    cell.paste((20, 20, 220), (0, 0, 512, 512))
    path = tmp_path / "cell.png"
    cell.save(path)
    return path


@pytest.mark.parametrize(("strength", "fidelity"), [(VARY_STRONG, "low"), (VARY_SUBTLE, "high")])
async def test_a_variation_goes_through_the_edits_endpoint_with_the_cell(
    api: FakeImagesAPI, tmp_path: Path, strength: float, fidelity: str
) -> None:
    api.models["gpt-image-1.5"] = ModelRules(input_fidelity=True)
    cell = _cell(tmp_path)
    backend = await load("openai:gpt-image-1.5")
    try:
        request = GenerationRequest(
            prompt="a red barn", mode=Mode.VARIATION, init_image=cell, strength=strength, parent="abc#2"
        )
        result, _ = await run(backend, request)
    finally:
        await asyncio.to_thread(backend.close)
    (call,) = api.image_requests()
    assert call.endpoint == "edits"
    assert call.params["image"] == "<file cell.png>"
    assert call.params["input_fidelity"] == fidelity
    assert call.params["n"] == 4
    assert call.params["prompt"] == "a red barn"
    with Image.open(cell) as sent:
        assert call.images[0].tobytes() == sent.convert("RGB").tobytes()
    assert result.extra["mode"] == "variation through the edits endpoint"
    assert result.extra["parent"] == "abc#2"
    # The fake keeps the picture it edits (recoloured): the variation is related to its cell.
    assert result.images[0].getpixel((100, 900))[0] > 100  # the red part stays reddish


async def test_an_upscale_is_a_local_resample_and_calls_no_api(api: FakeImagesAPI, tmp_path: Path) -> None:
    backend = await load()
    try:
        request = GenerationRequest(prompt="x", mode=Mode.UPSCALE, init_image=_cell(tmp_path), count=1)
        result, _ = await run(backend, request)
    finally:
        await asyncio.to_thread(backend.close)
    assert api.image_requests() == []
    assert result.images[0].size == (2048, 2048)
    assert "local 2x Lanczos resample" in result.extra["mode"]


async def test_an_edit_is_refused_as_the_engine_cannot_paint(api: FakeImagesAPI, tmp_path: Path) -> None:
    backend = await load()
    try:
        request = GenerationRequest(prompt="x", mode=Mode.EDIT, edit="zoom 2", init_image=_cell(tmp_path))
        with pytest.raises(GenerationError, match=re.escape(CANNOT_PAINT)):
            await run(backend, request)
    finally:
        await asyncio.to_thread(backend.close)


async def test_a_refused_prompt_carries_the_engines_reason(api: FakeImagesAPI) -> None:
    backend = await load()
    try:
        with pytest.raises(PromptRefused) as refused:
            await run(backend, GenerationRequest(prompt=f"something {REFUSED_WORD}"))
    finally:
        await asyncio.to_thread(backend.close)
    assert refused.value.engine == "OpenAI gpt-image-1"
    assert refused.value.reason.startswith("Your request was rejected by the safety system.")
    assert len(api.image_requests()) == 1  # a refusal is not retried


async def test_429_is_retried_after_the_servers_retry_after(api: FakeImagesAPI) -> None:
    api.fail_next(429, retry_after=1)
    backend = await load()
    try:
        result, _ = await run(backend, GenerationRequest(prompt="patience"))
    finally:
        await asyncio.to_thread(backend.close)
    first, second = api.image_requests()
    # The client's own first back-off is 0.375-0.5 s; a full second is the server's Retry-After.
    assert second.at - first.at >= 0.95, "the retry should wait the Retry-After second"
    assert len(result.images) == 4


async def test_429_after_every_retry_is_a_clear_failure(
    api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGINE_HOSTED_RETRIES", "1")
    api.fail_next(429, retry_after=0.2, times=2)
    backend = await load()
    try:
        with pytest.raises(GenerationError, match="rate-limiting this bot and still was after its retries"):
            await run(backend, GenerationRequest(prompt="patience"))
    finally:
        await asyncio.to_thread(backend.close)
    assert len(api.image_requests()) == 2


async def test_a_500_fails_the_job_with_a_message_and_the_backend_goes_on(
    api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGINE_HOSTED_RETRIES", "0")
    api.fail_next(500)
    backend = await load()
    try:
        with pytest.raises(GenerationError, match=r"failed on its side \(500\)"):
            await run(backend, GenerationRequest(prompt="oops"))
        result, _ = await run(backend, GenerationRequest(prompt="fine now"))
    finally:
        await asyncio.to_thread(backend.close)
    assert len(result.images) == 4


async def test_a_slow_answer_times_out_as_a_job_failure(
    api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGINE_HOSTED_TIMEOUT_S", "0.5")
    monkeypatch.setenv("IMAGINE_HOSTED_RETRIES", "0")
    api.delay_s = 3
    backend = await load()
    try:
        began = time.monotonic()
        with pytest.raises(GenerationError, match="did not answer in time"):
            await run(backend, GenerationRequest(prompt="slow"))
        assert time.monotonic() - began < 2.5  # the answer would take 3 s
    finally:
        await asyncio.to_thread(backend.close)


async def test_a_cancel_stops_the_calls_in_flight(api: FakeImagesAPI) -> None:
    api.delay_s = 5
    backend = await load()
    cancelled = threading.Event()
    try:
        asyncio.get_running_loop().call_later(0.3, cancelled.set)
        began = time.monotonic()
        with pytest.raises(JobCancelled):
            await run(backend, GenerationRequest(prompt="never mind"), cancelled=cancelled)
        assert time.monotonic() - began < 3  # the answer would take 5 s
    finally:
        await asyncio.to_thread(backend.close)


async def test_a_rejected_key_at_start_is_one_sentence(
    api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with pytest.raises(CredentialsRejected) as rejected:
        await load()
    message = str(rejected.value)
    assert message.startswith(
        f"The Images API at {api.base_url}/ rejected OPENAI_API_KEY (401: Incorrect API key"
    )
    assert "\n" not in message


async def test_a_key_without_access_at_start_is_one_sentence(
    api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", api.forbidden_key)
    with pytest.raises(
        CredentialsRejected, match=r"rejected OPENAI_API_KEY \(403: You have insufficient permissions"
    ):
        await load()


async def test_no_key_at_all_is_one_sentence(api: FakeImagesAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(CredentialsRejected, match="needs an API key: set OPENAI_API_KEY"):
        await load()


async def test_an_unreachable_base_url_is_one_sentence_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-anything")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    began = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"cannot be reached; check OPENAI_BASE_URL"):
        await load()
    assert time.monotonic() - began < 3


async def test_a_model_the_server_lacks_is_named_at_start(api: FakeImagesAPI) -> None:
    with pytest.raises(ModelLoadError, match="has no model 'gpt-image-9'"):
        await load("openai:gpt-image-9")


def test_capabilities_need_no_server() -> None:
    caps = capabilities("openai:gpt-image-1")
    assert caps.engine == "OpenAI gpt-image-1"
    assert caps.honours == {"aspect", "quality"}
    assert (caps.edits, caps.image_prompts, caps.hosted) == (False, True, True)
    assert capabilities("openai:dall-e-3").image_prompts is False


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("openai:", "names no OpenAI model"),
        ("openai:x,max_n=0", "is not an option"),
        ("openai:x,colour=red", "max_n=1..10"),
    ],
)
def test_malformed_specs_say_how_to_write_them(spec: str, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        capabilities(spec)


async def test_a_local_safety_checker_checks_the_start_picture_and_the_images(
    api: FakeImagesAPI, tmp_path: Path
) -> None:
    backend = await asyncio.to_thread(
        load_backend, "openai:gpt-image-1", safety_checker="tests.safety_checkers:flag_red"
    )
    try:
        assert backend.checker == "red-test"
        red = _cell(tmp_path)  # mostly red: flagged
        with pytest.raises(ImageFlagged):
            await run(backend, GenerationRequest(prompt="x", mode=Mode.IMAGE, init_image=red))
        assert api.image_requests() == []  # the picture never left this machine
        result, _ = await run(backend, GenerationRequest(prompt="a field"))
        assert result.checker == "red-test"
        assert len(result.flagged) == 4
    finally:
        await asyncio.to_thread(backend.close)
