"""The store's one API: each query or change is a small async function over a session the caller owns.

Functions flush but never commit: `Database.session()` commits the whole unit of work at the end.
A job's status changes only through the `mark_*`/`requeue_job`/`recover_unfinished` functions here,
which check the move (queued → running → succeeded | failed | cancelled | moderated; running → queued
only on recovery) and raise `JobStateError` otherwise.
"""

from __future__ import annotations

from bot.store._gallery import (
    DayUsage,
    GalleryImage,
    GalleryQuery,
    MemberUsage,
    family_of,
    gallery_image,
    gallery_job,
    gallery_jobs,
    member_names,
    usage_by_day,
    usage_by_member,
)
from bot.store._jobs import (
    MAX_ATTEMPTS,
    ImageRecord,
    Recovery,
    active_jobs,
    count_active,
    create_job,
    get_job,
    image_path,
    mark_cancelled,
    mark_failed,
    mark_moderated,
    mark_running,
    mark_succeeded,
    recent_jobs,
    recover_unfinished,
    requeue_job,
    set_message_id,
    unfinished_jobs,
)
from bot.store._locks import serialize
from bot.store._preferences import (
    get_guild_rules,
    get_user_preferences,
    update_guild_rules,
    update_user_preferences,
)
from bot.store._usage import UNSET, delete_quota_rule, quota_rules, set_quota_rule, usage_since

__all__ = [
    "MAX_ATTEMPTS",
    "UNSET",
    "DayUsage",
    "GalleryImage",
    "GalleryQuery",
    "ImageRecord",
    "MemberUsage",
    "Recovery",
    "active_jobs",
    "count_active",
    "create_job",
    "delete_quota_rule",
    "family_of",
    "gallery_image",
    "gallery_job",
    "gallery_jobs",
    "get_guild_rules",
    "get_job",
    "get_user_preferences",
    "image_path",
    "mark_cancelled",
    "mark_failed",
    "mark_moderated",
    "mark_running",
    "mark_succeeded",
    "member_names",
    "quota_rules",
    "recent_jobs",
    "recover_unfinished",
    "requeue_job",
    "serialize",
    "set_message_id",
    "set_quota_rule",
    "unfinished_jobs",
    "update_guild_rules",
    "update_user_preferences",
    "usage_by_day",
    "usage_by_member",
    "usage_since",
]
