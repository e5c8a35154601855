"""A gallery page's search and filters, read from its query string; a bad value is reported, not fatal."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Final
from urllib.parse import urlencode

from bot.store.queries import GalleryQuery

__all__ = ["MAX_WORDS", "Filters"]

MAX_WORDS: Final = 8
_MAX_TEXT = 200
_ASPECT = re.compile(r"^\d{1,3}:\d{1,3}$")
_CURSOR = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+\+00:00)~([0-9a-f]{32})$")
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Filters:
    """What the visitor asked for; `problems` says in words what was ignored and why."""

    text: str = ""
    aspect: str | None = None
    model: str | None = None
    member: int | None = None
    since: date | None = None
    until: date | None = None
    before: tuple[datetime, str] | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.text.split()[:MAX_WORDS])

    @property
    def active(self) -> bool:
        return bool(self.words or self.aspect or self.model or self.member or self.since or self.until)

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        problems: list[str] = []
        text = query.get("q", "").strip()[:_MAX_TEXT]
        if len(text.split()) > MAX_WORDS:
            problems.append(f"Only the first {MAX_WORDS} words are searched.")
        aspect = query.get("ar", "").strip() or None
        if aspect is not None and not _ASPECT.match(aspect):
            problems.append(f"The aspect ratio is two whole numbers like 16:9; {aspect[:20]!r} was ignored.")
            aspect = None
        model = query.get("model", "").strip()[:500] or None
        member: int | None = None
        if raw := query.get("member", "").strip():
            if raw.isdigit() and 0 < int(raw) <= _MAX_ID:
                member = int(raw)
            else:
                problems.append("The member is a Discord user id (digits); it was ignored.")
        days: dict[str, date | None] = {}
        for name, what in (("since", "from"), ("until", "until")):
            raw = query.get(name, "").strip()
            try:
                days[name] = date.fromisoformat(raw) if raw else None
            except ValueError:
                problems.append(f"The {what} date looks like 2026-11-30; {raw[:20]!r} was ignored.")
                days[name] = None
        before = None
        if (raw := query.get("before", "")) and (match := _CURSOR.match(raw)):
            before = (datetime.fromisoformat(match.group(1)), match.group(2))
        return cls(text, aspect, model, member, days["since"], days["until"], before, tuple(problems))

    def query(self, guild_id: int, *, owner_only: int | None) -> GalleryQuery:
        """The store's query for this search in server `guild_id` (only `owner_only`'s jobs, if given)."""
        return GalleryQuery(
            guild_id=guild_id,
            owner_only=owner_only,
            words=self.words,
            aspect=self.aspect,
            model=self.model,
            member=self.member,
            since=self.since,
            until=self.until,
            before=self.before,
        )

    def after(self, at: datetime, job_id: str) -> Filters:
        """The same search, one page on: jobs older than (`at`, `job_id`)."""
        return replace(self, before=(at, job_id), problems=())

    def query_string(self, **changes: str | None) -> str:
        """This search as a query string (paging cursor included), with `changes` applied."""
        values: dict[str, str | None] = {
            "q": self.text or None,
            "ar": self.aspect,
            "model": self.model,
            "member": str(self.member) if self.member else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "before": f"{self.before[0].isoformat()}~{self.before[1]}" if self.before else None,
        }
        values.update(changes)
        return urlencode({key: value for key, value in values.items() if value})
