"""The OpenAI engine against the loopback fake Images API (`tests.fakeopenai`), through the real client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from engine.backend import Backend
from engine.backends import load_backend
from engine.types import GenerationRequest, GenerationResult, Progress
from tests.fakeopenai import FakeImagesAPI, fake_images_api

KEY = "sk-test-key"


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeImagesAPI]:
    async with fake_images_api(api_key=KEY) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        yield fake
        assert fake.violations == [], "the engine sent requests the API documents as invalid"


async def load(spec: str = "openai:gpt-image-1") -> Backend:
    return await asyncio.to_thread(load_backend, spec)


async def run(
    backend: Backend,
    request: GenerationRequest,
    *,
    cancelled: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[GenerationResult, list[Progress]]:
    events: list[Progress] = []

    def progress(event: Progress) -> None:
        events.append(event)
        if on_progress is not None:
            on_progress(event)

    result = await asyncio.to_thread(
        backend.generate, request, on_progress=progress, cancelled=cancelled or threading.Event()
    )
    return result, events
