"""The GAN engine: a text-conditioned generator (noise z-map + text embedding → image) in one forward pass.

`IMAGINE_MODEL=gan-tiny` is the built-in generator trained here on the coloured-shapes captions
(`python -m engine.gan.train`, weights in `MODEL_DIR`); `IMAGINE_MODEL=gan:/path/to/folder` loads a
member's own generator from a folder of `config.json` + `generator.safetensors` (no pickles). See
docs/gan-model.md. Importing this package is cheap: torch is imported when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.backend import Capabilities
from engine.errors import ModelLoadError

if TYPE_CHECKING:
    from engine.gan._backend import GanBackend

__all__ = ["BUILT_IN", "ENGINE", "MODEL_DIR", "SCHEME", "GanEngine"]

SCHEME = "gan"
BUILT_IN = "gan-tiny"
MODEL_DIR: Path = Path(__file__).resolve().parent / "model"
"""The built-in `gan-tiny` generator, in the folder format a user's `gan:` folder uses."""

HONOURS = frozenset({"aspect", "seed"})
"""A GAN draws from a z-map and a text embedding: it honours `--ar` (a wider z-map) and `--seed`, and
nothing that steers a denoising loop (`--steps`, `--cfg`, `--sampler`, `--no`, `--stylize`, ...)."""


def _folder_of(spec: str) -> tuple[Path, str]:
    """(folder, label) for `gan-tiny` or `gan:/path/to/folder`."""
    if spec == BUILT_IN:
        return MODEL_DIR, BUILT_IN
    scheme, colon, path = spec.partition(":")
    if scheme != SCHEME or not colon or not path.strip():
        raise ModelLoadError(
            f"IMAGINE_MODEL {spec!r} is not a GAN model; use gan-tiny (built in) or gan:/path/to/folder "
            "holding config.json and generator.safetensors."
        )
    folder = Path(path.strip()).expanduser()
    return folder, folder.name or str(folder)


class GanEngine:
    """The `gan` scheme (and the bare name `gan-tiny`) of `IMAGINE_MODEL`."""

    def capabilities(self, spec: str) -> Capabilities:
        _, label = _folder_of(spec)
        return Capabilities(engine=f"GAN {label}", honours=HONOURS, edits=False, image_prompts=False)

    def load(self, spec: str, *, device: str, safety_checker: str) -> GanBackend:
        """Load the generator `spec` names; `ModelLoadError` with one sentence on what to fix."""
        from engine.backends._model import resolve_device
        from engine.gan._backend import GanBackend
        from engine.gan.folder import load_generator
        from engine.safety import load_safety_checker

        folder, _ = _folder_of(spec)
        checker = load_safety_checker(safety_checker)  # the GAN ships no checker: `model` means none
        generator = load_generator(folder, name=f"IMAGINE_MODEL={spec}")
        return GanBackend(
            generator,
            name=spec,
            capabilities=self.capabilities(spec),
            device=resolve_device(device),
            safety_checker=checker,
        )


ENGINE = GanEngine()
