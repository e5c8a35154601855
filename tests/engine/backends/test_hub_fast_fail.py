"""A hub model that is neither cached nor reachable fails at once, as one sentence, with nothing else
printed: the hub client's five retries (~23 s) and its warnings never start."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.backends._model import _hub_reachable, load_model
from engine.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[3]


def test_hub_reachability_is_a_quick_connection_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert _hub_reachable()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")  # closed now
    assert not _hub_reachable()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not _hub_reachable()


def test_a_missing_hub_model_with_the_hub_unreachable_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as on a new user's machine
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    began = time.monotonic()
    with pytest.raises(ModelLoadError, match="'someone/some-model' is not on this machine"):
        load_model("someone/some-model", device="cpu")
    assert time.monotonic() - began < 1


def test_the_failure_imports_neither_torch_nor_diffusers_and_prints_nothing(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from engine.backends import load_backend\n"
        "try:\n"
        "    load_backend('someone/some-model', device='auto')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, 'torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HF_HOME": str(tmp_path),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "ModelLoadError False False\n"
    assert done.stderr == ""
