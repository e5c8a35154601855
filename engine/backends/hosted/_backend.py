"""The OpenAI Images API behind the `Backend` protocol.

The backend is called from the queue's worker thread, synchronously. It owns one `AsyncOpenAI` client
on an event loop of its own (a daemon thread), so the four calls of a grid from a model limited to
`n=1` run at once on one connection pool, a cancel cancels the calls in flight, and the client's own
retries (429 with `Retry-After`, 5xx) and timeouts apply. The worker thread waits on the loop's
future, forwarding partial images and elapsed time as progress, and checks `cancelled` meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import logging
import queue
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import openai
from PIL import Image

from engine.backend import Capabilities, ProgressCallback
from engine.backends.hosted._models import PARTIAL_IMAGES, ModelSpec
from engine.edits import CANNOT_PAINT
from engine.errors import (
    CredentialsRejected,
    GenerationError,
    ImageFlagged,
    JobCancelled,
    ModelLoadError,
    PromptRefused,
)
from engine.safety import SafetyChecker, check_images
from engine.types import VARY_SUBTLE, GenerationRequest, GenerationResult, Mode, Progress

__all__ = ["OpenAIImagesBackend"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_REFUSALS = frozenset({"moderation_blocked", "content_policy_violation", "content_filter"})
"""Error codes the Images API (and compatible servers) answer a refused prompt with."""
_NO_SEEDS = "takes no seed, steps or CFG: the same recipe makes different images"
_TICK_S = 0.2
"""How often the waiting worker thread looks at `cancelled`, the previews and the clock."""
_PREVIEW_SIDE = 256


def _decode(b64: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.convert("RGB")


def _crop_to(image: Image.Image, aspect: tuple[int, int]) -> Image.Image:
    """The largest centred part of `image` with the shape `aspect` (whole pixels; no resampling)."""
    width, height = image.size
    if width * aspect[1] > height * aspect[0]:  # too wide
        width = max(1, round(height * aspect[0] / aspect[1]))
    else:
        height = max(1, round(width * aspect[1] / aspect[0]))
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image if (width, height) == image.size else image.crop((left, top, left + width, top + height))


def _png(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/png")


class OpenAIImagesBackend:
    """Grids, variations and image prompts from an Images API; upscales are a local 2x resample."""

    def __init__(
        self,
        spec: ModelSpec,
        capabilities: Capabilities,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 180.0,
        max_retries: int = 2,
        safety_checker: SafetyChecker | None = None,
    ) -> None:
        self.name = spec.spec
        self.spec = spec
        self.capabilities = capabilities
        self._safety = safety_checker
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{spec.spec} io", daemon=True)
        self._thread.start()
        try:
            self._client = self._run(self._make_client(api_key, base_url, timeout_s, max_retries))
        except openai.OpenAIError as exc:  # no key anywhere
            self.close()
            raise CredentialsRejected(
                f"{spec.engine} needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible "
                f"server) ({exc.__class__.__name__})."
            ) from None

    @staticmethod
    async def _make_client(
        api_key: str | None, base_url: str | None, timeout_s: float, max_retries: int
    ) -> openai.AsyncOpenAI:
        # Made on the loop that will use it: its connection pool belongs to that loop.
        return openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    @property
    def checker(self) -> str | None:
        """The local safety check on top of the provider's own moderation; None = the provider's only."""
        return self._safety.name if self._safety is not None else None

    # --- start ----------------------------------------------------------------------------

    def check_access(self, *, timeout_s: float = 5.0) -> None:
        """Ask the API about the model once: a rejected key or an unreachable server is one sentence
        now (`CredentialsRejected`, `ModelLoadError`), not a failure on the first job."""
        client = self._client.with_options(max_retries=0, timeout=timeout_s)
        try:
            self._run(client.models.retrieve(self.spec.model))
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise CredentialsRejected(
                f"The Images API at {self.base_url} rejected OPENAI_API_KEY ({exc.status_code}: "
                f"{_reason(exc)}); set a valid key for it."
            ) from None
        except openai.APITimeoutError:
            raise ModelLoadError(
                f"The Images API at {self.base_url} did not answer within {timeout_s:g} s; "
                "check OPENAI_BASE_URL and this machine's network."
            ) from None
        except openai.APIConnectionError:
            raise ModelLoadError(
                f"The Images API at {self.base_url} cannot be reached; check OPENAI_BASE_URL and this "
                "machine's network."
            ) from None
        except openai.NotFoundError as exc:
            if exc.code == "model_not_found":
                raise ModelLoadError(
                    f"The Images API at {self.base_url} has no model {self.spec.model!r}; "
                    "set IMAGINE_MODEL=openai:<a model it serves>."
                ) from None
            log.info("%s does not describe its models (%s); going on", self.base_url, exc.status_code)
        except openai.APIStatusError as exc:
            log.warning("%s answered %s to a model look-up; going on", self.base_url, exc.status_code)

    # --- jobs -----------------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> GenerationResult:
        """Run one job; the API's calls run on the backend's loop while this thread waits."""
        began = time.monotonic()
        if request.mode is Mode.EDIT:
            raise GenerationError(CANNOT_PAINT)
        if request.mode is Mode.UPSCALE:
            return self._upscale(request, began)
        if request.mode is Mode.IMAGE:
            self._check_start(request)
        size = self.spec.profile.size_for(request.aspect_ratio)
        previews: queue.SimpleQueue[str] = queue.SimpleQueue()
        images = self._wait(self._grid(request, size, previews), previews, on_progress, cancelled, began)
        # The model's nearest size, cropped to the shape asked for: the grid keeps the prompt's ratio.
        images = [_crop_to(image, request.aspect_ratio) for image in images]
        width, height = images[0].size
        extra = {"engine": f"{self.spec.engine} ({_NO_SEEDS})", "size asked": f"{size[0]}x{size[1]}"}
        quality = self.spec.profile.quality_for(request.quality)
        if quality is not None:
            extra["quality"] = quality
        if request.mode is not Mode.TEXT:
            extra["mode"] = f"{request.mode.value} through the edits endpoint"
            if _instruction(request) != request.prompt:
                extra["prompt sent"] = _instruction(request)
            if request.parent:
                extra["parent"] = request.parent
        return GenerationResult(
            images=tuple(images),
            seeds=request.seeds,
            width=width,
            height=height,
            steps=0,
            cfg=0.0,
            sampler="hosted",
            model=self.name,
            elapsed_s=time.monotonic() - began,
            extra=extra,
            flagged=check_images(self._safety, images),
            checker=self.checker,
        )

    def _check_start(self, request: GenerationRequest) -> None:
        """A member's picture goes to the provider only once the local safety check (if any) passed it."""
        if self._safety is None or request.allow_flagged_input or request.init_image is None:
            return
        with Image.open(request.init_image) as opened:
            start = opened.convert("RGB")
        if any(check_images(self._safety, [start])):
            raise ImageFlagged()

    def _wait(
        self,
        work: Coroutine[Any, Any, list[Image.Image]],
        previews: queue.SimpleQueue[str],
        on_progress: ProgressCallback,
        cancelled: threading.Event,
        began: float,
    ) -> list[Image.Image]:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        shown = 0
        total = PARTIAL_IMAGES + 1
        while True:
            try:
                return self._outcome(future, timeout=_TICK_S)
            except concurrent.futures.TimeoutError:
                pass
            if cancelled.is_set():
                future.cancel()
                raise JobCancelled("Cancelled while the hosted engine worked.")
            latest = None
            while not previews.empty():
                latest, shown = previews.get(), shown + 1
            if latest is not None:  # only the newest partial image is decoded: it is the one shown
                preview = _decode(latest)
                preview.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
                on_progress(Progress(step=min(shown, total - 1), total=total, preview=preview))
            elif not self.spec.profile.stream:
                # No partial images: the message shows how long it has been (total 0 = elapsed seconds).
                on_progress(Progress(step=int(time.monotonic() - began), total=0))

    def _outcome(self, future: concurrent.futures.Future[T], *, timeout: float) -> T:
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise
        except openai.APIError as exc:
            raise self._job_error(exc) from exc

    def _job_error(self, exc: openai.APIError) -> GenerationError:
        engine = self.spec.engine
        if exc.code in _REFUSALS or (isinstance(exc, openai.BadRequestError) and "safety" in exc.message):
            return PromptRefused(engine, _reason(exc))
        if isinstance(exc, openai.RateLimitError):
            return GenerationError(
                f"{engine} is rate-limiting this bot and still was after its retries; try again in a minute."
            )
        if isinstance(exc, openai.APITimeoutError):
            return GenerationError(f"{engine} did not answer in time; try again.")
        if isinstance(exc, openai.APIConnectionError):
            return GenerationError(f"{engine} cannot be reached right now; try again later.")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return GenerationError(f"{engine} rejected the bot's API key; tell the bot's admin.")
        if isinstance(exc, openai.InternalServerError):
            return GenerationError(f"{engine} failed on its side ({exc.status_code}); try again.")
        return GenerationError(f"{engine} could not make this: {_reason(exc)}")

    async def _grid(
        self, request: GenerationRequest, size: tuple[int, int], previews: queue.SimpleQueue[str]
    ) -> list[Image.Image]:
        """`request.count` images: one call with `n` where the model allows it, else calls at once."""
        per_call = self.spec.profile.max_n
        counts = [min(per_call, request.count - done) for done in range(0, request.count, per_call)]
        batches = await asyncio.gather(*(self._call(request, size, n, previews) for n in counts))
        images = [image for batch in batches for image in batch]
        if len(images) != request.count:
            raise GenerationError(
                f"{self.spec.engine} sent {len(images)} images for {request.count}; try again."
            )
        return images

    def _arguments(self, request: GenerationRequest, size: tuple[int, int], n: int) -> dict[str, Any]:
        profile = self.spec.profile
        arguments: dict[str, Any] = {
            "model": self.spec.model,
            "prompt": _instruction(request),
            "n": n,
            "size": f"{size[0]}x{size[1]}",
        }
        quality = profile.quality_for(request.quality)
        if quality is not None:
            arguments["quality"] = quality
        if not profile.b64_by_default:
            arguments["response_format"] = "b64_json"
        if profile.stream:
            arguments["stream"] = True
            arguments["partial_images"] = PARTIAL_IMAGES
        if request.mode is not Mode.TEXT:
            if not profile.edits or request.init_image is None:
                raise GenerationError(f"{self.spec.engine} cannot start from a picture.")
            arguments["image"] = _png(request.init_image)
            if profile.input_fidelity and request.mode is Mode.VARIATION:
                arguments["input_fidelity"] = "high" if request.strength <= VARY_SUBTLE else "low"
        return arguments

    async def _call(
        self,
        request: GenerationRequest,
        size: tuple[int, int],
        n: int,
        previews: queue.SimpleQueue[str],
    ) -> list[Image.Image]:
        arguments = self._arguments(request, size, n)
        images = self._client.images
        call = images.generate if request.mode is Mode.TEXT else images.edit
        if not arguments.get("stream"):
            response = await call(**arguments)
            return [
                await asyncio.to_thread(_decode, item.b64_json)
                for item in response.data or []
                if item.b64_json
            ]
        finished: list[Image.Image] = []
        stream = await call(**arguments)
        async for event in stream:
            if event.type.endswith(".partial_image"):
                previews.put(event.b64_json)
            elif event.type.endswith(".completed"):
                finished.append(await asyncio.to_thread(_decode, event.b64_json))
        return finished

    def _upscale(self, request: GenerationRequest, began: float) -> GenerationResult:
        """U: the cell at twice its size, resampled here (Lanczos); the API has no upscaler."""
        if request.init_image is None:
            raise GenerationError("This upscale needs the image it starts from, and the job names none.")
        with Image.open(request.init_image) as opened:
            source = opened.convert("RGB")
        size = (source.width * 2, source.height * 2)
        if request.max_side is not None and max(size) > request.max_side:
            raise GenerationError(
                f"Upscaling would make a {size[0]}×{size[1]} image, larger than the largest side "
                f"this server makes ({request.max_side} px)."
            )
        image = source.resize(size, Image.Resampling.LANCZOS)
        extra = {"mode": "upscale (local 2x Lanczos resample; no diffusion pass)", "engine": self.spec.engine}
        if request.parent:
            extra["parent"] = request.parent
        return GenerationResult(
            images=(image,),
            seeds=request.seeds[:1],
            width=size[0],
            height=size[1],
            steps=0,
            cfg=0.0,
            sampler="lanczos",
            model=self.name,
            elapsed_s=time.monotonic() - began,
            extra=extra,
            flagged=check_images(self._safety, [image]),
            checker=self.checker,
        )

    # --- plumbing -------------------------------------------------------------------------

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def close(self) -> None:
        """Close the client's connections and stop the loop."""
        if self._loop.is_closed():
            return
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                self._run(client.close())
            except Exception as exc:  # closing must not fail the shutdown
                log.warning("closing the Images API client: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


_WORDLESS = {
    Mode.IMAGE: "An image made from this picture: its subject, palette and layout.",
    Mode.VARIATION: "A variation of this image.",
}
"""What the API is told when the member gave pictures but no words (`/blend`): it requires a prompt."""


def _instruction(request: GenerationRequest) -> str:
    return request.prompt if request.prompt.strip() else _WORDLESS.get(request.mode, request.prompt)


def _reason(exc: openai.APIError) -> str:
    """The API's own words for an error, without the client's `Error code: 400 - {...}` wrapping."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return exc.message
