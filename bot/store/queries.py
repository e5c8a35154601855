"""The queries the bot needs, each a small async function over a session the caller owns.

Functions flush but never commit: `Database.session()` commits the whole unit of work at the end.
Job status moves queued → running → succeeded | failed | cancelled (running → queued on recovery);
any other change raises `JobStateError`.
"""

from __future__ import annotations

from bot.store._admin import (
    UNSET,
    Usage,
    delete_quota_rule,
    get_guild_settings,
    get_user_settings,
    guild_usage_since,
    quota_rules,
    set_quota_rule,
    upsert_guild_settings,
    upsert_user_settings,
    usage_since,
)
from bot.store._jobs import (
    UNFINISHED,
    ImageRecord,
    Recovery,
    create_job,
    get_job,
    mark_cancelled,
    mark_failed,
    mark_running,
    mark_succeeded,
    recent_jobs,
    recover_unfinished,
    requeue_job,
    set_message_id,
    unfinished_jobs,
)

__all__ = [
    "UNFINISHED",
    "UNSET",
    "ImageRecord",
    "Recovery",
    "Usage",
    "create_job",
    "delete_quota_rule",
    "get_guild_settings",
    "get_job",
    "get_user_settings",
    "guild_usage_since",
    "mark_cancelled",
    "mark_failed",
    "mark_running",
    "mark_succeeded",
    "quota_rules",
    "recent_jobs",
    "recover_unfinished",
    "requeue_job",
    "set_message_id",
    "set_quota_rule",
    "unfinished_jobs",
    "upsert_guild_settings",
    "upsert_user_settings",
    "usage_since",
]
