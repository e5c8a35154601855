"""The job service is the bot's Discord-free core: importing it must not load discord.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_job_service_does_not_import_discord() -> None:
    code = (
        "import sys, bot.jobs, bot.job_runner, bot.job_records, bot.policy, bot.user_errors; "
        "print(sorted(m for m in sys.modules if m == 'discord' or m.startswith('discord.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
