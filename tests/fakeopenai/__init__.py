"""A loopback fake of OpenAI's Images API, for driving the real `openai` client (and the bot) in tests.

It serves `GET /v1/models/{model}`, `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
(multipart) on 127.0.0.1, answering with `b64_json` images or, with `stream: true`, Server-Sent Events
(`image_generation.partial_image` ... `image_generation.completed`, `image_edit.*` for edits) as the API
reference describes them. Every request is checked the way the API documents its parameters (known
names only, `n` 1..10 and at most what the model allows, a size the model makes, a quality it knows,
`partial_images` 0..3 and only when streaming, `response_format` refused for GPT image models, `image`
a PNG on edits); a request that breaks a rule gets the API's 400 and is recorded in `violations`, so a
test can assert there were none.

Bad cases on demand: a wrong key (401), `forbidden_key` (403), a prompt holding `REFUSED_WORD`
(400 `moderation_blocked`), `fail_next(status, retry_after=…)` (429 with `Retry-After`, 500, …),
`delay_s` (slow answers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, ImageDraw

__all__ = ["REFUSED_WORD", "FakeImagesAPI", "ModelRules", "Recorded", "fake_images_api"]

REFUSED_WORD = "forbidden"
"""A prompt containing this word is refused as the API refuses unsafe prompts."""

_GPT_SIZES = frozenset({"1024x1024", "1536x1024", "1024x1536", "auto"})
_GPT_QUALITIES = frozenset({"low", "medium", "high", "auto"})
_GENERATE_PARAMS = frozenset(
    {
        "prompt", "model", "n", "size", "quality", "stream", "partial_images", "background", "moderation",
        "output_format", "output_compression", "response_format", "user", "safety_identifier", "style",
    }
)  # fmt: skip
_EDIT_PARAMS = frozenset(
    {
        "image", "image[]", "prompt", "model", "n", "size", "quality", "stream", "partial_images", "mask",
        "background", "input_fidelity", "output_format", "output_compression", "response_format", "user",
        "safety_identifier",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ModelRules:
    """What one fake model accepts."""

    max_n: int = 10
    sizes: frozenset[str] = _GPT_SIZES
    input_fidelity: bool = False


@dataclass
class Recorded:
    """One request as the fake received it."""

    endpoint: str
    params: dict[str, Any]
    images: list[Image.Image] = field(default_factory=list)
    at: float = 0.0
    """When it arrived (`time.monotonic()`)."""
    done: float = 0.0
    """When the fake had answered it (the last byte written)."""


class _Refusal(Exception):
    def __init__(self, status: int, message: str, code: str | None, kind: str = "invalid_request_error"):
        self.status, self.message, self.code, self.kind = status, message, code, kind


class FakeImagesAPI:
    """The fake server; `async with fake_images_api() as api:` starts it and gives `api.base_url`."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test-key",
        forbidden_key: str = "sk-without-images",
        models: dict[str, ModelRules] | None = None,
        delay_s: float = 0.0,
        partial_delay_s: float = 0.05,
    ) -> None:
        self.api_key = api_key
        self.forbidden_key = forbidden_key
        """A valid key of a project not allowed to use the Images API: 403."""
        self.models = models if models is not None else {"gpt-image-1": ModelRules()}
        self.delay_s = delay_s
        """How long every image request takes before it answers (as an image model takes seconds)."""
        self.partial_delay_s = partial_delay_s
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        """Requests the fake refused for breaking the API's documented rules (a test's bug or the bot's)."""
        self._failures: list[tuple[int, float | None]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- control ----------------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` image requests with `status` (429 carries `Retry-After`)."""
        self._failures.extend([(status, retry_after)] * times)

    def image_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.endpoint != "models"]

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models/{model}", self._model)
        app.router.add_post("/v1/images/generations", self._generations)
        app.router.add_post("/v1/images/edits", self._edits)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- handlers ---------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.forbidden_key}":
            raise _Refusal(
                403, "You have insufficient permissions for this operation.", "insufficient_permissions"
            )
        if header != f"Bearer {self.api_key}":
            raise _Refusal(
                401,
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_api_key",
            )

    async def _model(self, request: web.Request) -> web.StreamResponse:
        try:
            self._authorised(request)
            name = request.match_info["model"]
            self.requests.append(Recorded("models", {"model": name}, at=time.monotonic()))
            if name not in self.models:
                raise _Refusal(
                    404,
                    f"The model `{name}` does not exist or you do not have access to it.",
                    "model_not_found",
                )
            return web.json_response({"id": name, "object": "model", "created": 0, "owned_by": "system"})
        except _Refusal as refusal:
            return _error(refusal)

    async def _generations(self, request: web.Request) -> web.StreamResponse:
        return await self._images(request, "generations")

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        return await self._images(request, "edits")

    async def _images(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        arrived = time.monotonic()
        try:
            self._authorised(request)
            params, inputs = await (self._json(request) if endpoint == "generations" else self._form(request))
            record = Recorded(endpoint, params, inputs, at=arrived)
            self.requests.append(record)
            n, size, stream, partials = self._check(endpoint, params, inputs)
            if self._failures:
                status, retry_after = self._failures.pop(0)
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                message = (
                    "Rate limit reached for images per minute."
                    if status == 429
                    else "The server had an error."
                )
                return _error(_Refusal(status, message, kind, kind), headers)
            if REFUSED_WORD in str(params.get("prompt", "")).lower():
                raise _Refusal(
                    400,
                    "Your request was rejected by the safety system. Your request may contain content that "
                    "is not allowed by our safety system.",
                    "moderation_blocked",
                    "image_generation_user_error",
                )
        except _Refusal as refusal:
            return _error(refusal)
        width, height = (1024, 1024) if size == "auto" else (int(v) for v in size.split("x"))
        prompt = str(params["prompt"])
        source = inputs[0] if inputs else None
        quality = str(params.get("quality", "auto"))
        # The pictures are drawn while the "model works" (`delay_s`), so the answer takes that long
        # whenever drawing them is quicker.
        drawing = asyncio.create_task(
            asyncio.to_thread(_pictures, prompt, n, partials if stream else 0, (width, height), source)
        )
        await asyncio.sleep(self.delay_s)
        finals, blurry = await drawing
        if not stream:
            data = [{"b64_json": final} for final in finals]
            body = {
                "created": int(time.time()),
                "data": data,
                "background": "opaque",
                "output_format": "png",
                "quality": "medium" if quality == "auto" else quality,
                "size": f"{width}x{height}",
                "usage": _usage(n),
            }
            answer = web.json_response(body)
            await answer.prepare(request)
            await answer.write_eof()
            record.done = time.monotonic()
            return answer
        streamed = await self._stream(request, endpoint, finals, blurry, (width, height), quality)
        record.done = time.monotonic()
        return streamed

    async def _stream(
        self,
        request: web.Request,
        endpoint: str,
        finals: list[str],
        blurry: list[list[str]],
        size: tuple[int, int],
        quality: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        kind = "image_generation" if endpoint == "generations" else "image_edit"
        common = {
            "background": "opaque",
            "output_format": "png",
            "quality": "medium" if quality == "auto" else quality,
            "size": f"{size[0]}x{size[1]}",
            "created_at": int(time.time()),
        }
        for final_b64, partials_b64 in zip(finals, blurry, strict=True):
            for partial, partial_b64 in enumerate(partials_b64):
                await asyncio.sleep(self.partial_delay_s)
                event = {"type": f"{kind}.partial_image", "b64_json": partial_b64}
                event["partial_image_index"] = partial
                await _send(response, event["type"], {**common, **event})
            final = {"type": f"{kind}.completed", "b64_json": final_b64, "usage": _usage(1)}
            await _send(response, final["type"], {**common, **final})
        await response.write_eof()
        return response

    # --- reading and checking requests -----------------------------------------------------

    @staticmethod
    async def _json(request: web.Request) -> tuple[dict[str, Any], list[Image.Image]]:
        if request.content_type != "application/json":
            raise _Refusal(400, f"Expected application/json, got {request.content_type}.", None)
        body = await request.json()
        if not isinstance(body, dict):
            raise _Refusal(400, "The body must be a JSON object.", None)
        return body, []

    @staticmethod
    async def _form(request: web.Request) -> tuple[dict[str, Any], list[Image.Image]]:
        if request.content_type != "multipart/form-data":
            raise _Refusal(400, f"Edits take multipart/form-data, got {request.content_type}.", None)
        form = await request.post()
        params: dict[str, Any] = {}
        images: list[Image.Image] = []
        for key, value in form.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                if key in ("image", "image[]"):
                    if not data.startswith(b"\x89PNG"):
                        raise _Refusal(
                            400,
                            "Invalid image file. Supported formats are png, webp and jpg.",
                            "invalid_image_format",
                        )
                    with Image.open(io.BytesIO(data)) as opened:
                        images.append(opened.convert("RGB"))
                params[key] = f"<file {value.filename}>"
            else:
                params[key] = _form_value(str(value))
        return params, images

    def _check(
        self, endpoint: str, params: dict[str, Any], inputs: list[Image.Image]
    ) -> tuple[int, str, bool, int]:
        allowed = _GENERATE_PARAMS if endpoint == "generations" else _EDIT_PARAMS
        unknown = sorted(set(params) - allowed)
        if unknown:
            self._violate(f"Unrecognized request argument supplied: {unknown[0]}")
        prompt = params.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            self._violate("Missing required parameter: 'prompt'.")
        if len(prompt) > 32000:
            self._violate("Invalid 'prompt': string too long. Expected a string with maximum length 32000.")
        model = params.get("model")
        if model not in self.models:
            raise _Refusal(
                404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found"
            )
        rules = self.models[model]
        n = params.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            self._violate(f"Invalid 'n': integer below minimum value or above maximum value (got {n!r}).")
        if n > rules.max_n:
            self._violate(f"Invalid 'n': {model} supports only n={rules.max_n}.")
        size = params.get("size", "auto")
        if size not in rules.sizes:
            self._violate(f"Invalid value: '{size}'. Supported values are: {', '.join(sorted(rules.sizes))}.")
        quality = params.get("quality", "auto")
        if quality not in _GPT_QUALITIES:
            self._violate(
                f"Invalid value: '{quality}'. Supported values are: 'low', 'medium', 'high', and 'auto'."
            )
        if "response_format" in params:
            self._violate("Unknown parameter: 'response_format'. GPT image models always return b64_json.")
        stream = params.get("stream", False)
        if not isinstance(stream, bool):
            self._violate(f"Invalid type for 'stream': expected a boolean, got {stream!r}.")
        partials = params.get("partial_images", 0)
        if "partial_images" in params and not stream:
            self._violate("'partial_images' is only supported when 'stream' is true.")
        if not isinstance(partials, int) or not 0 <= partials <= 3:
            self._violate(f"Invalid 'partial_images': expected an integer from 0 to 3, got {partials!r}.")
        if endpoint == "edits":
            if not inputs:
                self._violate("Missing required parameter: 'image'.")
            if "input_fidelity" in params and not rules.input_fidelity:
                self._violate(f"Invalid 'input_fidelity': not supported for {model}.")
            if params.get("input_fidelity", "low") not in ("low", "high"):
                self._violate("Invalid 'input_fidelity': expected 'low' or 'high'.")
        return int(n), str(size), bool(stream), int(partials)

    def _violate(self, message: str) -> None:
        self.violations.append(message)
        raise _Refusal(400, message, "invalid_value")


def _form_value(raw: str) -> Any:
    """Multipart fields are text; the client writes ints as digits and booleans as true/false."""
    if raw in ("true", "false"):
        return raw == "true"
    if raw.isdigit():
        return int(raw)
    return raw


def _error(refusal: _Refusal, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": refusal.message, "type": refusal.kind, "param": None, "code": refusal.code}}
    return web.json_response(body, status=refusal.status, headers=headers)


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


def _usage(n: int) -> dict[str, Any]:
    return {
        "input_tokens": 10,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 10},
        "output_tokens": 272 * n,
        "total_tokens": 10 + 272 * n,
    }


def _colour(text: str, index: int) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{text}#{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def _draw(prompt: str, index: int, width: int, height: int, source: Image.Image | None) -> Image.Image:
    """A picture a person can tell apart: the prompt's colour, a disc whose place is the image's index,
    a frame at the edges (so a crop shows); an edit keeps its source, recoloured, with the disc on it."""
    if source is not None:
        base = Image.blend(
            source.resize((width, height)), Image.new("RGB", (width, height), _colour(prompt, index)), 0.3
        )
    else:  # one hue per prompt, a little darker image by image
        red, green, blue = _colour(prompt, 0)
        base = Image.new("RGB", (width, height), (red * (5 - index) // 5, green * (5 - index) // 5, blue))
    draw = ImageDraw.Draw(base)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(255, 255, 255), width=max(2, width // 64))
    r = min(width, height) // 6
    cx = width // 4 if index % 2 == 0 else 3 * width // 4
    cy = height // 4 if index < 2 else 3 * height // 4
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(prompt, index + 1))
    return base


def _pictures(
    prompt: str, n: int, partials: int, size: tuple[int, int], source: Image.Image | None
) -> tuple[list[str], list[list[str]]]:
    """The `n` finished pictures and, for each, `partials` blurry earlier looks, base64-encoded PNGs.

    Pictures of a prompt alone are drawn once (the fake's drawing is not what a benchmark measures)."""
    if source is None:
        return _drawn(prompt, n, partials, size)
    return _draw_pictures(prompt, n, partials, size, source)


@functools.lru_cache(maxsize=32)
def _drawn(prompt: str, n: int, partials: int, size: tuple[int, int]) -> tuple[list[str], list[list[str]]]:
    return _draw_pictures(prompt, n, partials, size, None)


def _draw_pictures(
    prompt: str, n: int, partials: int, size: tuple[int, int], source: Image.Image | None
) -> tuple[list[str], list[list[str]]]:
    finals: list[str] = []
    blurry: list[list[str]] = []
    for index in range(n):
        picture = _draw(prompt, index, *size, source)
        finals.append(_b64(picture))
        small = picture.resize((size[0] // 16, size[1] // 16))
        blurry.append([_b64(small.resize(size))] * partials)
    return finals, blurry


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode()


@contextlib.asynccontextmanager
async def fake_images_api(**options: Any) -> AsyncIterator[FakeImagesAPI]:
    """A started fake; closed on exit."""
    api = FakeImagesAPI(**options)
    await api.start()
    try:
        yield api
    finally:
        await api.close()
