"""The parameters of the prompt language: names, aliases, value checks, and per-user defaults.

Private to `bot.prompt`. Every check raises `PromptError` naming the parameter as the user typed
it, the allowed values, and what was given.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.prompt._lexer import PromptError, RawParameter, normalise_space, quote
from engine.types import SAMPLERS

if TYPE_CHECKING:
    from bot.config import Config

__all__ = [
    "PromptLimits",
    "apply_parameters",
    "model_flag",
    "normalise_defaults",
]

_INT = re.compile(r"\d{1,12}")
_FLOAT = re.compile(r"\d{1,10}(?:\.\d{1,10})?|\.\d{1,10}")
_RATIO = re.compile(r"(\d{1,6}):(\d{1,6})")
_QUALITIES = (0.25, 0.5, 1.0, 2.0)
_TRUE = ("", "true", "on", "yes", "1")
_FALSE = ("false", "off", "no", "0")


@dataclass(frozen=True, slots=True)
class PromptLimits:
    """Caps from config: text length, `--repeat`, total prompts, and the `--v`/`--niji` alias names."""

    max_length: int = 2000
    max_repeat: int = 4
    max_permutations: int = 40
    model_aliases: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> PromptLimits:
        """The limits the owner configured (`IMAGINE_MAX_PROMPT_LENGTH`, `IMAGINE_MODEL_ALIASES`, ...)."""
        return cls(
            max_length=config.max_prompt_length,
            max_repeat=config.max_repeat,
            max_permutations=config.max_permutations,
            model_aliases=tuple(config.model_aliases),
        )


@dataclass(slots=True)
class Parameters:
    """Parameter values for one request, filled in while parsing; defaults are Midjourney's."""

    aspect_ratio: tuple[int, int] = (1, 1)
    seed: int | None = None
    no: str = ""
    chaos: int = 0
    stylize: int = 100
    quality: float = 1.0
    stop: int = 100
    tile: bool = False
    repeat: int = 1
    image_weight: float | None = None
    model: str | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None


def _words_hint(value: str) -> str:
    # A value with spaces usually means prompt text was typed after a parameter.
    if " " in value:
        return " Everything after a parameter counts as its value; put the prompt text before the first `--`."
    return ""


def _whole(value: str, flag: str, low: int, high: int, where: str = "") -> int:
    if _INT.fullmatch(value) and low <= int(value) <= high:
        return int(value)
    raise PromptError(
        f"`{flag}` takes a whole number from {low} to {high}{where}; got {quote(value)}.{_words_hint(value)}",
        parameter=flag,
    )


def _number(value: str, flag: str, low: float, high: float, example: str) -> float:
    if _FLOAT.fullmatch(value) and low <= float(value) <= high:
        return float(value)
    raise PromptError(
        f"`{flag}` takes a number from {low:g} to {high:g}, like {example}; got {quote(value)}."
        + _words_hint(value),
        parameter=flag,
    )


# --- one function per parameter: (collected values, value as typed, flag as typed, limits) ----------


def _aspect(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    match = _RATIO.fullmatch(value)
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise PromptError(
            f"`{flag}` takes two whole numbers like 16:9; got {quote(value)}.{_words_hint(value)}",
            parameter=flag,
        )
    width, height = int(match[1]), int(match[2])
    if width > 4 * height or height > 4 * width:
        raise PromptError(
            f"`{flag}` must lie between 1:4 (tall) and 4:1 (wide); got {value}.", parameter=flag
        )
    divisor = math.gcd(width, height)
    params.aspect_ratio = (width // divisor, height // divisor)


def _seed(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.seed = _whole(value, flag, 0, 2**32 - 1)


def _no(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.no = value


def _chaos(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.chaos = _whole(value, flag, 0, 100)


def _stylize(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.stylize = _whole(value, flag, 0, 1000)


def _quality(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    if _FLOAT.fullmatch(value) and float(value) in _QUALITIES:
        params.quality = float(value)
        return
    raise PromptError(
        f"`{flag}` takes .25, .5, 1 or 2; got {quote(value)}.{_words_hint(value)}", parameter=flag
    )


def _stop(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.stop = _whole(value, flag, 10, 100)


def _tile(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    if value:
        raise PromptError(
            f"`{flag}` takes no value; got {quote(value)}. Put the prompt text before the parameters.",
            parameter=flag,
        )
    params.tile = True


def _repeat(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.repeat = _whole(value, flag, 1, limits.max_repeat, " on this bot")


def _image_weight(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.image_weight = _number(value, flag, 0, 3, "1.5")


def model_flag(alias: str) -> str:
    """How to ask for a model alias in a prompt: `--niji`, `--niji 6` or `--version 6`."""
    words = normalise_space(alias)
    if words.casefold() == "niji":
        return "--niji"
    if words.casefold().startswith("niji "):
        return f"--niji {words[5:]}"
    return f"--version {words}"


def _resolve_model(alias: str, flag: str, limits: PromptLimits) -> str:
    if not limits.model_aliases:
        raise PromptError(
            f"`{flag}` picks one of the model versions the bot's owner sets up, and this bot has none; "
            f"remove `{flag}`.",
            parameter=flag,
        )
    for name in limits.model_aliases:
        if normalise_space(name).casefold() == alias.casefold():
            return name
    choices = ", ".join(f"`{model_flag(name)}`" for name in limits.model_aliases)
    raise PromptError(
        f"There is no model version {quote(alias)} on this bot; choose one of {choices}.", parameter=flag
    )


def _version(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.model = _resolve_model(value, flag, limits)


def _niji(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    # `--niji` alone is the alias `niji`; `--niji 6` is the alias `niji 6`.
    params.model = _resolve_model(f"niji {value}" if value else "niji", flag, limits)


def _steps(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.steps = _whole(value, flag, 1, 150)


def _cfg(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    params.cfg = _number(value, flag, 0, 30, "7.5")


def _sampler(params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    name = value.lower().replace("-", "_")
    if name in SAMPLERS:
        params.sampler = name
        return
    close = difflib.get_close_matches(name, SAMPLERS, n=1)
    suggestion = f" Did you mean `{close[0]}`?" if close else ""
    raise PromptError(
        f"`{flag}` {quote(value)} is not a sampler this bot has.{suggestion} "
        f"Choose one of {', '.join(SAMPLERS)}.",
        parameter=flag,
    )


_Apply = Callable[[Parameters, str, str, PromptLimits], None]


@dataclass(frozen=True, slots=True)
class _Spec:
    key: str
    """Names sharing a key are one parameter (`--ar`/`--aspect`, `--v`/`--niji`)."""
    names: tuple[str, ...]
    """The first is the long name used in canonical text and suggestions."""
    apply: _Apply
    example: str
    takes_value: bool = True


_SPECS = (
    _Spec("aspect_ratio", ("aspect", "ar"), _aspect, "--ar 16:9"),
    _Spec("seed", ("seed",), _seed, "--seed 1234"),
    _Spec("no", ("no",), _no, "--no text, frame"),
    _Spec("chaos", ("chaos", "c"), _chaos, "--chaos 30"),
    _Spec("stylize", ("stylize", "s"), _stylize, "--stylize 250"),
    _Spec("quality", ("quality", "q"), _quality, "--quality .5"),
    _Spec("stop", ("stop",), _stop, "--stop 80"),
    _Spec("tile", ("tile",), _tile, "--tile", takes_value=False),
    _Spec("repeat", ("repeat", "r"), _repeat, "--repeat 2"),
    _Spec("image_weight", ("iw",), _image_weight, "--iw 1.5"),
    _Spec("model", ("version", "v"), _version, "--v 6"),
    _Spec("model", ("niji",), _niji, "--niji", takes_value=False),
    _Spec("steps", ("steps",), _steps, "--steps 30"),
    _Spec("cfg", ("cfg",), _cfg, "--cfg 7.5"),
    _Spec("sampler", ("sampler",), _sampler, "--sampler euler_a"),
)
_BY_NAME = {name: spec for spec in _SPECS for name in spec.names}

_IMAGE_REFERENCE = "To guide the picture with an image, put its link at the start of the prompt."
_STILLS = "This bot makes still images."
_QUEUE = "Every job here goes through one fair queue."
_UPSCALE = "Press a U button under a grid to upscale."
_UNSUPPORTED: dict[str, str] = {
    **dict.fromkeys(("weird", "w"), "Try `--chaos` for more varied results."),
    **dict.fromkeys(("style", "raw", "personalize", "p", "profile", "test", "testp", "creative", "exp"), ""),
    **dict.fromkeys(("sref", "sv", "sw", "cref", "cw", "oref", "ow"), _IMAGE_REFERENCE),
    **dict.fromkeys(("video", "motion", "loop", "end", "bs"), _STILLS),
    **dict.fromkeys(("fast", "relax", "turbo"), _QUEUE),
    **dict.fromkeys(("hd", "uplight", "upbeta", "upanime"), _UPSCALE),
    "draft": "For a quick draft use `--quality .25` or fewer `--steps`.",
    **dict.fromkeys(("public", "stealth"), "Images are posted where you ask for them."),
    "h": "Use `--ar` to choose the shape.",
    "sameseed": "Use `--seed`.",
}


def _unknown(name: str, flag: str) -> PromptError:
    for known in sorted(_BY_NAME, key=len, reverse=True):
        rest = name[len(known) :]
        if name.startswith(known) and rest and not rest[0].isalpha():
            spaced = quote(f"--{known} {rest}")
            return PromptError(
                f"{quote(flag)}: put a space between `--{known}` and its value, like {spaced}.",
                parameter=flag,
            )
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.6)
    if close:
        return PromptError(
            f"{quote(flag)} is not a parameter; did you mean `--{_BY_NAME[close[0]].names[0]}`?",
            parameter=flag,
        )
    names = ", ".join("/".join(f"--{name}" for name in spec.names) for spec in _SPECS)
    return PromptError(f"{quote(flag)} is not a parameter; this bot knows {names}.", parameter=flag)


def _spec_for(name: str, flag: str) -> _Spec:
    spec = _BY_NAME.get(name)
    if spec is not None:
        return spec
    if name == "zoom":
        raise PromptError(
            f"`{flag}` only works in the Custom Zoom box, under an upscaled image; remove it here.",
            parameter=flag,
        )
    if name in _UNSUPPORTED:
        hint = _UNSUPPORTED[name]
        raise PromptError(
            f"`{flag}` is a Midjourney parameter this bot does not support; remove it. {hint}".rstrip(),
            parameter=flag,
        )
    raise _unknown(name, flag)


def _apply(spec: _Spec, params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    if spec.takes_value and not value:
        raise PromptError(f"`{flag}` needs a value, like `{spec.example}`.", parameter=flag)
    spec.apply(params, value, flag, limits)


def _defaults(defaults: Mapping[str, str]) -> Iterator[tuple[_Spec, str, str]]:
    """Each default as (spec, flag, value); a key may be written `ar`, `--ar` or `aspect`."""
    keys: dict[str, str] = {}
    for raw_key, raw_value in defaults.items():
        # Stored config may hold numbers (`{"s": 250}`); read everything as text.
        name = str(raw_key).strip().lstrip("-\u2014\u2013").lower()
        flag = f"--{name}"
        try:
            spec = _spec_for(name, flag)
        except PromptError as exc:
            raise PromptError(
                f"Your saved default {quote(flag)} cannot be used: {exc.message} Change it with /settings.",
                parameter=flag,
            ) from None
        if spec.key in keys:
            raise PromptError(
                f"Your saved defaults set `{keys[spec.key]}` and `{flag}`, which are the same thing; "
                "keep one with /settings.",
                parameter=flag,
            )
        keys[spec.key] = flag
        value = normalise_space(str(raw_value))
        if not spec.takes_value and spec.key != "model":
            if value.lower() in _FALSE:
                continue
            if value.lower() in _TRUE:
                value = ""
        yield spec, flag, value


def _apply_default(spec: _Spec, params: Parameters, value: str, flag: str, limits: PromptLimits) -> None:
    try:
        _apply(spec, params, value, flag, limits)
    except PromptError as exc:
        raise PromptError(
            f"Your saved default {quote(f'{flag} {value}'.rstrip())} no longer works: {exc.message} "
            "Change it with /settings.",
            parameter=flag,
        ) from None


def apply_parameters(
    raw: Sequence[RawParameter],
    defaults: Mapping[str, str] | None,
    limits: PromptLimits,
    *,
    has_images: bool,
) -> Parameters:
    """Check every parameter, then fill in the user's defaults for the ones the prompt leaves out."""
    params = Parameters()
    given: dict[str, str] = {}
    for item in raw:
        spec = _spec_for(item.name, item.flag)
        if spec.key in given:
            first = given[spec.key]
            same = "is given twice" if first.lower() == item.flag.lower() else f"and `{first}` set one thing"
            raise PromptError(f"`{item.flag}` {same}; keep one.", parameter=item.flag)
        given[spec.key] = item.flag
        _apply(spec, params, item.value, item.flag, limits)
    for spec, flag, value in _defaults(defaults or {}):
        # A default `--iw` only matters for prompts that have image links.
        if spec.key in given or (spec.key == "image_weight" and not has_images):
            continue
        _apply_default(spec, params, value, flag, limits)
    if params.image_weight is not None and not has_images:
        raise PromptError(
            f"`{given['image_weight']}` needs an image URL at the start of the prompt.",
            parameter=given["image_weight"],
        )
    return params


def normalise_defaults(defaults: Mapping[str, str], limits: PromptLimits) -> dict[str, str]:
    """Check per-user defaults (as /settings stores them) and key them by long name: {"aspect": "16:9"}."""
    params = Parameters()
    checked: dict[str, str] = {}
    for spec, flag, value in _defaults(defaults):
        _apply_default(spec, params, value, flag, limits)
        checked[spec.names[0]] = value
    return checked
