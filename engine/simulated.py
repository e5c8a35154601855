"""A backend that only waits, as a GPU would, leaving the CPU free: for queue tests and benchmarks.

It honours the backend protocol fully: progress every step, cancellation between steps (and
while waiting), failures on demand, a `gate` that holds every step so a test can decide
exactly when a job may move on, and the safety check on the start picture and on what comes out.
An edit comes out at its real canvas size (`engine.edits`), the source kept and the new area one
flat colour; an upscale names its kind (subtle/creative) and refuses to pass `max_side`, as the
diffusers backend does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from PIL import Image

from engine.backend import Capabilities, ProgressCallback
from engine.edits import CANNOT_PAINT, Canvas, canvas_for, composite, parse_edit
from engine.errors import GenerationError, ImageFlagged, JobCancelled, ModelLoadError
from engine.safety import SafetyChecker, check_images
from engine.types import (
    UPSCALE_CREATIVE,
    UPSCALE_SUBTLE,
    GenerationRequest,
    GenerationResult,
    Mode,
    Progress,
)

__all__ = ["ENGINE", "SIMULATED", "SimulatedBackend", "SimulatedEngine"]

SIMULATED = "simulated"
"""`IMAGINE_MODEL=simulated[:seconds=0.2,steps=10,previews=true]`: a stand-in for a GPU, for tests and
benchmarks of the bot and its workers (`imaginebot worker` runs it like a model)."""

_LONG_EDGE = 64
_MULTIPLE = 8
_UPSCALE_NAMES = {UPSCALE_SUBTLE: "upscale (subtle)", UPSCALE_CREATIVE: "upscale (creative)"}


class SimulatedBackend:
    """Takes `seconds` per job in `steps` steps and returns plain-coloured images."""

    def __init__(
        self,
        *,
        seconds: float = 0.05,
        steps: int = 10,
        name: str = "simulated",
        previews: bool = False,
        fail: Callable[[GenerationRequest], BaseException | None] | None = None,
        gate: threading.Event | None = None,
        safety_checker: SafetyChecker | None = None,
        edits: bool = True,
    ) -> None:
        """`fail(request)` returns an exception to raise at the first step, or None.

        `gate`, when given, must be set for any step to run; clear it to hold every job where it is.
        `safety_checker` looks at an image prompt's start picture and at every image made.
        `edits=False` makes an engine that cannot paint: an edit fails with `CANNOT_PAINT`.
        """
        if seconds < 0 or steps < 1:
            raise ValueError(f"need seconds >= 0 and steps >= 1; got seconds={seconds}, steps={steps}")
        self.name = name
        self.seconds = seconds
        self.steps = steps
        self.previews = previews
        self._fail = fail
        self.gate = gate
        self._safety = safety_checker
        self.capabilities = Capabilities(name, edits=edits)
        """Every parameter honoured; painting only with `edits`."""
        self.calls: list[GenerationRequest] = []
        """Requests in the order they started (appended on the device thread)."""
        self.closed = False

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
    ) -> GenerationResult:
        """Wait through the steps like a denoising loop, then return one image per seed."""
        self.calls.append(request)
        began = time.monotonic()
        if request.mode is Mode.IMAGE:
            self._check_start(request)
        canvas = self._canvas(request) if request.mode is Mode.EDIT else None
        width, height = canvas.size if canvas is not None else _size(request.aspect_ratio)
        extra = self._extra(request, (width, height))
        for step in range(1, self.steps + 1):
            self._wait_for_gate(cancelled)
            if cancelled.is_set():
                raise JobCancelled(f"Cancelled at step {step} of {self.steps}.")
            if step == 1 and self._fail is not None and (error := self._fail(request)) is not None:
                raise error
            # Wait until this step's deadline rather than for a fixed slice, so timer overshoot
            # does not add up over the steps; a cancel ends the wait at once.
            deadline = began + self.seconds * step / self.steps
            remaining = deadline - time.monotonic()
            if remaining > 0 and cancelled.wait(remaining):
                raise JobCancelled(f"Cancelled at step {step} of {self.steps}.")
            preview = Image.new("RGB", (8, 8), _colour(request.seed)) if self.previews else None
            on_progress(Progress(step=step, total=self.steps, preview=preview))
        images = tuple(Image.new("RGB", (width, height), _colour(seed)) for seed in request.seeds)
        if canvas is not None:
            images = tuple(composite(canvas, image) for image in images)
        return GenerationResult(
            images=images,
            seeds=request.seeds,
            width=width,
            height=height,
            steps=self.steps,
            cfg=request.cfg if request.cfg is not None else 7.0,
            sampler=request.sampler or "euler",
            model=self.name,
            elapsed_s=time.monotonic() - began,
            extra=extra,
            flagged=check_images(self._safety, images),
            checker=self.checker,
        )

    @property
    def checker(self) -> str | None:
        """The name of the safety checker this backend's images go through; None = none."""
        return self._safety.name if self._safety is not None else None

    def _canvas(self, request: GenerationRequest) -> Canvas:
        if not self.capabilities.edits:
            raise GenerationError(CANNOT_PAINT)
        edit = parse_edit(request.edit)
        if request.init_image is None:
            raise GenerationError("This edit needs the image it starts from, and the job names none.")
        with Image.open(request.init_image) as opened:
            source = opened.convert("RGB")
        return canvas_for(source, edit, multiple=_MULTIPLE, max_side=request.max_side)

    @staticmethod
    def _extra(request: GenerationRequest, size: tuple[int, int]) -> dict[str, str]:
        """The recipe fields the diffusers backend gives an edit or an upscale (and its parent)."""
        extra: dict[str, str] = {}
        if request.mode is Mode.EDIT:
            extra["mode"] = parse_edit(request.edit).label
        elif request.mode is Mode.UPSCALE:
            if request.max_side is not None and max(size) > request.max_side:
                raise GenerationError(
                    f"Upscaling would make a {size[0]}×{size[1]} image, larger than the largest side "
                    f"this server makes ({request.max_side} px)."
                )
            extra["mode"] = _UPSCALE_NAMES.get(request.strength, Mode.UPSCALE.value)
        if extra and request.parent:
            extra["parent"] = request.parent
        return extra

    def _check_start(self, request: GenerationRequest) -> None:
        if self._safety is None or request.allow_flagged_input:
            return
        if request.init_image is None:
            raise GenerationError("This image prompt needs the image it starts from, and the job names none.")
        with Image.open(request.init_image) as start:
            picture = start.convert("RGB")
        if any(check_images(self._safety, [picture])):
            raise ImageFlagged()

    @classmethod
    def from_spec(cls, spec: str, *, safety_checker: SafetyChecker | None = None) -> SimulatedBackend:
        """`simulated` or `simulated:seconds=0.2,steps=10,previews=true`; named by the whole spec, so the
        bot and its workers agree on which model it is."""
        name, _, options = spec.partition(":")
        if name != SIMULATED:
            raise ModelLoadError(f"{spec!r} is not a simulated model; it looks like simulated:seconds=0.2.")
        values: dict[str, str] = {}
        for option in filter(None, options.split(",")):
            key, _, value = option.partition("=")
            values[key.strip()] = value.strip()
        unknown = set(values) - {"seconds", "steps", "previews"}
        try:
            if unknown:
                raise ValueError(f"unknown option {sorted(unknown)[0]!r}")
            return cls(
                seconds=float(values.get("seconds", 0.05)),
                steps=int(values.get("steps", 10)),
                previews=values.get("previews", "false").lower() in ("1", "true", "yes", "on"),
                name=spec,
                safety_checker=safety_checker,
            )
        except ValueError as exc:
            raise ModelLoadError(
                f"IMAGINE_MODEL={spec!r}: {exc}; a simulated model takes seconds=, steps= and previews=, "
                "like simulated:seconds=0.2,steps=10,previews=true."
            ) from None

    def _wait_for_gate(self, cancelled: threading.Event) -> None:
        # Poll so a cancel is seen while held; 5 ms is plenty for tests.
        while self.gate is not None and not self.gate.wait(0.005):
            if cancelled.is_set():
                return

    def close(self) -> None:
        self.closed = True


class SimulatedEngine:
    """The `simulated` scheme of `IMAGINE_MODEL` (`engine.backends`): honours everything, paints."""

    def capabilities(self, spec: str) -> Capabilities:
        return Capabilities(spec)

    def load(self, spec: str, *, device: str, safety_checker: str) -> SimulatedBackend:
        from engine.safety import load_safety_checker

        return SimulatedBackend.from_spec(spec, safety_checker=load_safety_checker(safety_checker))


ENGINE = SimulatedEngine()


def _size(aspect_ratio: tuple[int, int]) -> tuple[int, int]:
    w, h = aspect_ratio
    scale = _LONG_EDGE / max(w, h)
    return max(8, round(w * scale / 8) * 8), max(8, round(h * scale / 8) * 8)


def _colour(seed: int) -> tuple[int, int, int]:
    return (seed * 67 % 256, seed * 131 % 256, seed * 197 % 256)
