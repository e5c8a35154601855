"""Loading a diffusers model once and deriving its other pipelines from it without copying weights.

`LoadedModel` owns the text-to-image pipeline; image-to-image and inpainting pipelines come from it
with `from_pipe`, so all three share the same UNet, VAE and text encoder tensors.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.backends._family import Family, detect_family
from engine.backends._preview import LatentPreviewer
from engine.backends._schedulers import SchedulerCache
from engine.errors import ModelLoadError
from engine.safety import PipelineSafetyChecker, SafetyChecker

__all__ = ["TINY", "LoadedModel", "load_model", "resolve_device"]

TINY = "tiny"
"""The model name that means the built-in offline pipeline (`engine.tiny.MODEL_DIR`)."""


def resolve_device(device: str) -> str:
    """`auto` → cuda, mps or cpu, whichever is present; an explicit device must exist."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"IMAGINE_DEVICE is {device!r} but this machine has no usable CUDA GPU "
            "(or torch is the CPU build); set IMAGINE_DEVICE=auto or cpu, or install the CUDA build of torch."
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("IMAGINE_DEVICE is 'mps' but Apple's Metal backend is not available here.")
    return device


def _dtype_for(device: str) -> Any:
    import torch

    # Half precision halves VRAM and is what these models ship in; CPUs are slow and inexact in fp16.
    return torch.float16 if device.startswith(("cuda", "mps")) else torch.float32


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~", "\\")) or model.count("/") > 1 or "\\" in model


def _source(model: str) -> tuple[str, bool]:
    """Where to load `model` from, and whether it is the built-in tiny model."""
    if model == TINY:
        from engine.tiny import MODEL_DIR

        return str(MODEL_DIR), True
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"Model folder {str(path)!r} has no model_index.json, so it is not a diffusers folder; "
                "point IMAGINE_MODEL at the folder that `save_pretrained` wrote (or `hf download` fetched)."
            )
        return str(path), False
    if _looks_like_path(model):
        raise ModelLoadError(
            f"Model folder {model!r} does not exist; set IMAGINE_MODEL to a local diffusers folder, "
            "a Hugging Face hub id like stabilityai/sdxl-turbo, or `tiny`."
        )
    return model, False


def _from_pretrained(source: str, dtype: Any, *, half: bool, local_only: bool = False) -> Any:
    from diffusers import AutoPipelineForText2Image

    with warnings.catch_warnings():
        # diffusers passes the hub client arguments it has deprecated; that is not the owner's to fix.
        warnings.simplefilter("ignore", UserWarning)
        if half:
            # Hub repos often ship an fp16 variant (half the download); local folders often don't.
            try:
                return AutoPipelineForText2Image.from_pretrained(
                    source, torch_dtype=dtype, variant="fp16", local_files_only=local_only
                )
            except (OSError, ValueError):
                pass
        return AutoPipelineForText2Image.from_pretrained(
            source, torch_dtype=dtype, local_files_only=local_only
        )


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hub's host answers a TCP connection within `timeout_s` (no DNS, no route: False at
    once), so a missing model fails in seconds instead of after the hub client's retries (~23 s)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _not_here(model: str) -> ModelLoadError:
    return ModelLoadError(
        f"Model {model!r} is not on this machine and the Hugging Face Hub can't be reached "
        f"(or has no such model); download it once (`hf download {model}`) "
        "or set IMAGINE_MODEL to a local diffusers folder."
    )


def _in_hub_cache(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "model_index.json"), str)


def _is_hub_id(model: str, source: str) -> bool:
    return source == model and not Path(model).exists()


def _load_pipeline(model: str, source: str, dtype: Any, *, half: bool) -> Any:
    """The pipeline from a folder, or a hub id: from the local cache first, from the Hub only when it
    is not cached and the Hub answers."""
    if not _is_hub_id(model, source):  # a folder (or `tiny`)
        return _from_pretrained(source, dtype, half=half)
    try:
        return _from_pretrained(source, dtype, half=half, local_only=True)
    except Exception:
        if _in_hub_cache(model):
            raise  # cached but broken: the error says what
    return _from_pretrained(source, dtype, half=half)


def load_model(model: str, *, device: str) -> LoadedModel:
    """Load `model` (hub id, local folder or `tiny`) onto `device` ("auto" allowed).

    A hub id that is neither in the local cache nor reachable fails at once, before torch and
    diffusers are even imported (the hub client would retry for ~23 s, printing each try)."""
    source, tiny = _source(model)
    if _is_hub_id(model, source) and not _in_hub_cache(model) and not _hub_reachable():
        raise _not_here(model)
    device = resolve_device(device)
    dtype = _dtype_for(device)
    try:
        pipe = _load_pipeline(model, source, dtype, half=not tiny and dtype != _dtype_for("cpu"))
    except ModelLoadError:
        raise
    except Exception as exc:  # hub, file and config errors all mean the same to the owner: fix the setting
        if source == model and not Path(model).exists():
            raise _not_here(model) from exc
        raise ModelLoadError(f"Model {model!r} could not be loaded from {source}: {exc}") from exc
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipe, model, tiny=tiny)


class LoadedModel:
    """One model on its device: the text-to-image pipeline and, on demand, pipelines derived from it."""

    def __init__(self, pipe: Any, model_id: str, *, tiny: bool = False) -> None:
        self.model_id = model_id
        self.text2img = pipe
        self.family: Family = detect_family(pipe, model_id, tiny=tiny)
        self.schedulers = SchedulerCache(pipe.scheduler)
        self.previewer = LatentPreviewer(pipe.vae, int(pipe.vae_scale_factor))
        self.safety_checker: SafetyChecker | None = None
        """What this model's images are checked with; the backend sets it (`engine.safety`)."""

    def to(self, device: str) -> None:
        """Move the model, and its own safety checker (taken out of the pipeline), to `device`."""
        self.text2img.to(device)
        if isinstance(self.safety_checker, PipelineSafetyChecker):
            self.safety_checker.to(device)

    @functools.cached_property
    def img2img(self) -> Any:
        """The image-to-image pipeline, sharing every weight with `text2img`."""
        return self._derive("AutoPipelineForImage2Image")

    @functools.cached_property
    def inpaint(self) -> Any:
        """The inpainting pipeline, sharing every weight with `text2img`."""
        return self._derive("AutoPipelineForInpainting")

    def _derive(self, auto_pipeline: str) -> Any:
        import diffusers

        pipe = getattr(diffusers, auto_pipeline).from_pipe(self.text2img)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @contextlib.contextmanager
    def seamless(self, enabled: bool) -> Iterator[None]:
        """Circular padding in every UNet and VAE convolution while enabled (`--tile`), restored after."""
        if not enabled:
            yield
            return
        import torch

        convs = [
            m
            for model in (self.text2img.unet, self.text2img.vae)
            for m in model.modules()
            if isinstance(m, torch.nn.Conv2d)
        ]
        saved = [conv.padding_mode for conv in convs]
        for conv in convs:
            conv.padding_mode = "circular"
        try:
            yield
        finally:
            for conv, mode in zip(convs, saved, strict=True):
                conv.padding_mode = mode

    def close(self) -> None:
        """Drop the pipelines and give the device memory back."""
        self.text2img = None
        self.safety_checker = None
        for derived in ("img2img", "inpaint"):
            self.__dict__.pop(derived, None)  # cached_property keeps its value here
        gc.collect()
        free_device_memory()


def free_device_memory() -> None:
    """Return cached CUDA blocks to the driver (after an OOM or unloading a model)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
