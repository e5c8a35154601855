"""Shared test set-up: every test runs offline, and torch's threads don't spin on a shared CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Read by OpenMP when torch first loads, which is after this file is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
