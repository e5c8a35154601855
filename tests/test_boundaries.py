"""The dependency direction from DESIGN.md: the engine knows nothing of Discord, databases or the bot."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "engine": {"discord", "sqlalchemy", "alembic", "aiosqlite", "bot"},
    "bot/prompt.py": {"discord", "sqlalchemy"},
    "bot/policy.py": {"discord"},
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
