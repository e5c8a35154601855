"""The dependency direction from DESIGN.md: the engine knows nothing of Discord, databases or the bot."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "engine": {"discord", "sqlalchemy", "alembic", "aiosqlite", "bot"},
    "engine/queue/_scheduler.py": {"asyncio", "threading"},  # the policy is pure bookkeeping
    "bot/prompt": {"discord", "sqlalchemy"},
    "bot/policy.py": {"discord", "sqlalchemy"},
    "bot/jobs": {"discord"},
    "bot/store": {"discord"},
    "bot/errors.py": {"discord"},
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _python_files(target: str) -> list[Path]:
    path = ROOT / target
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


@pytest.mark.parametrize("target", sorted(FORBIDDEN))
def test_forbidden_imports(target: str) -> None:
    files = _python_files(target)
    assert files, f"{target} has no Python files"
    offenders = {
        str(f.relative_to(ROOT)): sorted(_imported_top_levels(f) & FORBIDDEN[target])
        for f in files
        if _imported_top_levels(f) & FORBIDDEN[target]
    }
    assert offenders == {}


def test_scanner_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import discord.ext\nfrom sqlalchemy.orm import Mapped\nfrom . import sibling\n")
    assert _imported_top_levels(sample) == {"discord", "sqlalchemy"}


def test_the_core_and_the_command_line_never_load_discord() -> None:
    # Transitively, at run time: `imaginebot imagine` and the job service run without discord.py.
    code = (
        "import sys, bot.jobs, bot.services, bot.imagine_cli, bot.policy, bot.errors; "
        "print(sorted(m for m in sys.modules if m == 'discord' or m.startswith('discord.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
