from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.policy import (
    BannedWord,
    ChannelNotAllowed,
    FlaggedImages,
    Limits,
    NotJobOwner,
    QuotaExceeded,
    QuotaRuleSpec,
    QuotaScope,
    TooManyJobs,
    Usage,
    check_banned_words,
    check_button_press,
    check_channel,
    check_job_counts,
    check_quota,
    day_window,
    find_banned_word,
    flagged_images_get,
    resolve_limits,
)

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


def limits_for(rules: list[QuotaRuleSpec], roles: tuple[int, ...] = ()) -> Limits:
    return resolve_limits(rules, user_id=7, role_ids=roles, default_max_waiting=10, default_max_running=3)


def test_no_rules_means_unlimited_with_settings_defaults() -> None:
    limits = limits_for([])
    assert (limits.jobs_per_day, limits.gpu_minutes_per_day) == (None, None)
    assert (limits.max_waiting, limits.max_running, limits.source) == (10, 3, "default")


def test_user_rule_beats_role_and_guild() -> None:
    rules = [
        QuotaRuleSpec(QuotaScope.GUILD, None, jobs_per_day=5),
        QuotaRuleSpec(QuotaScope.ROLE, 100, jobs_per_day=50),
        QuotaRuleSpec(QuotaScope.USER, 7, jobs_per_day=2, max_waiting=1),
        QuotaRuleSpec(QuotaScope.USER, 8, jobs_per_day=999),
    ]
    limits = limits_for(rules, roles=(100,))
    assert (limits.jobs_per_day, limits.max_waiting, limits.max_running, limits.source) == (2, 1, 3, "user")


def test_role_beats_guild_and_several_roles_take_the_most_generous() -> None:
    rules = [
        QuotaRuleSpec(QuotaScope.GUILD, None, jobs_per_day=100, gpu_minutes_per_day=100),
        QuotaRuleSpec(QuotaScope.ROLE, 1, jobs_per_day=5, gpu_minutes_per_day=30, max_running=1),
        QuotaRuleSpec(QuotaScope.ROLE, 2, jobs_per_day=20, gpu_minutes_per_day=10, max_waiting=2),
        QuotaRuleSpec(QuotaScope.ROLE, 3, jobs_per_day=1000),  # the user lacks this role
    ]
    limits = limits_for(rules, roles=(1, 2))
    assert limits.jobs_per_day == 20
    assert limits.gpu_minutes_per_day == 30
    assert (limits.max_waiting, limits.max_running, limits.source) == (10, 3, "role")


def test_an_unlimited_role_is_most_generous() -> None:
    rules = [
        QuotaRuleSpec(QuotaScope.ROLE, 1, jobs_per_day=5),
        QuotaRuleSpec(QuotaScope.ROLE, 2, jobs_per_day=None),
    ]
    assert limits_for(rules, roles=(1, 2)).jobs_per_day is None


def test_guild_default_applies_without_user_or_role_rule() -> None:
    rules = [
        QuotaRuleSpec(QuotaScope.GUILD, None, jobs_per_day=3),
        QuotaRuleSpec(QuotaScope.ROLE, 9, jobs_per_day=1),
    ]
    limits = limits_for(rules, roles=(4,))
    assert (limits.jobs_per_day, limits.source) == (3, "guild")


def test_day_window_is_utc_midnight_to_midnight() -> None:
    start, end = day_window(NOW)
    assert start == datetime(2026, 11, 22, tzinfo=UTC)
    assert end == datetime(2026, 11, 23, tzinfo=UTC)


def test_jobs_quota_counts_the_new_jobs() -> None:
    limits = Limits(jobs_per_day=4, gpu_minutes_per_day=None, max_waiting=10, max_running=3)
    check_quota(limits, Usage(jobs=2), now=NOW, new_jobs=2)
    with pytest.raises(QuotaExceeded) as caught:
        check_quota(limits, Usage(jobs=3), now=NOW, new_jobs=2)
    assert "4 jobs" in str(caught.value)
    assert f"<t:{int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())}:R>" in str(caught.value)


def test_gpu_minutes_quota_refuses_once_used_up() -> None:
    limits = Limits(jobs_per_day=None, gpu_minutes_per_day=1.5, max_waiting=10, max_running=3)
    check_quota(limits, Usage(jobs=50, gpu_seconds=89.0), now=NOW)
    with pytest.raises(QuotaExceeded, match=r"1\.5 GPU minutes"):
        check_quota(limits, Usage(gpu_seconds=90.0), now=NOW)


def test_job_counts_allow_free_running_slots_then_waiting() -> None:
    limits = Limits(None, None, max_waiting=2, max_running=1)
    check_job_counts(limits, waiting=0, running=0, new_jobs=3)
    check_job_counts(limits, waiting=1, running=1, new_jobs=1)
    with pytest.raises(TooManyJobs, match="2 jobs waiting"):
        check_job_counts(limits, waiting=2, running=1, new_jobs=1)
    with pytest.raises(TooManyJobs):
        check_job_counts(limits, waiting=0, running=0, new_jobs=4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a Gore scene", "gore"),
        ("gorefest", None),
        ("the blood moon rises", "blood moon"),
        ("bloody moon", None),
        ("", None),
    ],
)
def test_banned_words_match_whole_words_case_insensitively(text: str, expected: str | None) -> None:
    assert find_banned_word(text, ["  ", "gore", "blood moon"]) == expected


def test_banned_word_error_names_the_word() -> None:
    with pytest.raises(BannedWord, match="`gore`"):
        check_banned_words("so much GORE", ["gore"])


def test_channel_allow_list() -> None:
    check_channel(5, [])
    check_channel(5, [4, 5])
    with pytest.raises(ChannelNotAllowed, match="<#4>"):
        check_channel(6, [4])


def test_owner_only_buttons() -> None:
    check_button_press(presser_id=2, owner_id=1, owner_only=False)
    check_button_press(presser_id=1, owner_id=1, owner_only=True)
    with pytest.raises(NotJobOwner, match="<@1>"):
        check_button_press(presser_id=2, owner_id=1, owner_only=True)


@pytest.mark.parametrize("rule", list(FlaggedImages))
def test_flagged_images_follow_the_servers_rule_only_in_age_restricted_channels(rule: FlaggedImages) -> None:
    assert flagged_images_get(rule, age_restricted=True) is rule
    assert flagged_images_get(rule, age_restricted=False) is FlaggedImages.BLOCK
