"""Cleanup's decisions from a head's metadata alone, its report, and its token bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from remstate.cleanup import Action, TokenBucket, decide
from remstate.cleanup.report import SKIPPED_TOUCHED, Tally
from remstate.errors import InvalidInput
from remstate.objects import StoredObject
from remstate.schema import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TTL,
    LABEL_LIFECYCLE,
    LABEL_STATUS,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
    format_timestamp,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(days=7)
GRACE = timedelta(hours=24)


def head(
    *,
    age: timedelta | None = timedelta(days=8),
    status: str = "completed",
    soft_deleted: timedelta | None = None,
    ttl: str | None = None,
    **annotations: str,
) -> StoredObject:
    """A head's metadata: last updated ``age`` ago, soft-deleted ``soft_deleted`` ago."""
    notes = dict(annotations)
    if age is not None:
        notes[ANNOTATION_LAST_UPDATE] = format_timestamp(NOW - age)
    if soft_deleted is not None:
        notes[ANNOTATION_SOFT_DELETED_AT] = format_timestamp(NOW - soft_deleted)
    if ttl is not None:
        notes[ANNOTATION_TTL] = ttl
    lifecycle = LIFECYCLE_SOFT_DELETED if soft_deleted is not None else LIFECYCLE_ACTIVE
    return StoredObject(
        name="task-1-state",
        data=None,
        labels={LABEL_STATUS: status, LABEL_LIFECYCLE: lifecycle},
        annotations=notes,
        resource_version="7",
    )


def action(obj: StoredObject, *, force: bool = False) -> Action:
    return decide(obj, now=NOW, ttl=TTL, grace=GRACE, force=force).action


class TestDecide:
    @pytest.mark.parametrize(
        ("obj", "expected"),
        [
            (head(age=timedelta(days=6)), Action.KEEP),
            (head(age=TTL), Action.KEEP),  # exactly the ttl: not older than it
            (head(age=TTL + timedelta(seconds=1)), Action.SOFT_DELETE),
            (head(status="pending"), Action.SOFT_DELETE),
            (head(status="failed"), Action.SOFT_DELETE),
            (head(status="in_progress"), Action.SKIP_ACTIVE),
            (head(status="awaiting_review"), Action.SKIP_ACTIVE),
            (head(age=timedelta(days=1), status="in_progress"), Action.KEEP),
            (head(soft_deleted=timedelta(hours=23)), Action.WAIT),
            (head(soft_deleted=GRACE), Action.PURGE),
            (head(soft_deleted=timedelta(days=3)), Action.PURGE),
            (head(age=timedelta(days=1), soft_deleted=timedelta(days=3)), Action.RESTORE),
            (head(status="in_progress", soft_deleted=timedelta(days=3)), Action.SKIP_ACTIVE),
        ],
    )
    def test_table(self, obj: StoredObject, expected: Action) -> None:
        """Each case of the decision table, from labels and annotations only."""
        assert action(obj) is expected

    @pytest.mark.parametrize(
        ("status", "soft_deleted", "expected"),
        [
            ("in_progress", None, Action.SOFT_DELETE),
            ("awaiting_review", None, Action.SOFT_DELETE),
            ("in_progress", timedelta(days=2), Action.PURGE),
        ],
    )
    def test_force_lifts_the_protection(
        self, status: str, soft_deleted: timedelta | None, expected: Action
    ) -> None:
        """With force, an expired loop under way is soft-deleted and then purged."""
        assert action(head(status=status, soft_deleted=soft_deleted), force=True) is expected

    @pytest.mark.parametrize(
        ("ttl", "age", "expected"),
        [
            ("2592000", timedelta(days=8), Action.KEEP),  # 30 days of its own
            ("3600", timedelta(hours=2), Action.SOFT_DELETE),  # one hour of its own
            ("3600", timedelta(minutes=30), Action.KEEP),
        ],
    )
    def test_the_tasks_own_ttl_overrides_the_default(
        self, ttl: str, age: timedelta, expected: Action
    ) -> None:
        """``remstate.io/ttl`` (seconds) replaces the run's ttl for that head."""
        decision = decide(head(age=age, ttl=ttl), now=NOW, ttl=TTL, grace=GRACE, force=False)
        assert decision.action is expected
        assert "the task's own ttl" in decision.reason

    @pytest.mark.parametrize(
        "obj",
        [
            head(age=None),
            head(age=None, **{ANNOTATION_LAST_UPDATE: "yesterday"}),
            head(ttl="seven days"),
            head(ttl="0"),
            head(ttl="-5"),
            head(ttl="99999999999999"),
        ],
    )
    def test_unreadable_metadata_is_an_error_never_a_delete(self, obj: StoredObject) -> None:
        """A missing or unreadable last update or ttl leaves the head alone, as an error."""
        assert action(obj, force=True) is Action.ERROR

    def test_an_unreadable_soft_delete_time_restarts_the_grace_period(self) -> None:
        """Soft-deleted with no readable time: marked again, never purged."""
        obj = head(soft_deleted=timedelta(days=30))
        broken = StoredObject(
            name=obj.name,
            data=None,
            labels=obj.labels,
            annotations={**obj.annotations, ANNOTATION_SOFT_DELETED_AT: "garbage"},
        )
        decision = decide(broken, now=NOW, ttl=TTL, grace=GRACE, force=False)
        assert decision.action is Action.SOFT_DELETE
        assert "starts again" in decision.reason

    def test_reasons_say_why(self) -> None:
        """The reason names the last update, the ttl and the grace period."""
        soft = decide(head(), now=NOW, ttl=TTL, grace=GRACE, force=False).reason
        assert "last update 2026-11-23T12:00:00Z" in soft
        assert "ttl 1w" in soft
        assert "grace 1d" in soft
        purge = decide(
            head(soft_deleted=timedelta(days=2)), now=NOW, ttl=TTL, grace=GRACE, force=False
        ).reason
        assert "soft-deleted 2026-11-29T12:00:00Z" in purge


class TestTally:
    def test_counts_and_names(self) -> None:
        """Actions are counted and named; waits are counted only."""
        tally = Tally(NOW, TTL, GRACE, dry_run=False, force=False)
        tally.add("scanned", 5)
        tally.record("soft-delete", "a", "1", "expired", "3")
        tally.record("purge", "b", "2", "grace over", "4")
        tally.record("wait", "c", "3", "in grace", "5")
        tally.record(SKIPPED_TOUCHED, "d", "4", "changed", "6")
        tally.record("error", "e", "5", "unreadable", "7")
        report = tally.report()
        assert (report.scanned, report.soft_deleted, report.purged, report.in_grace) == (5, 1, 1, 1)
        assert (report.skipped_touched, report.errors, report.restored) == (1, 1, 0)
        assert [i.name for i in report.items] == ["a", "b", "d", "e"]
        data = report.to_dict()
        assert (data["ttl"], data["ttl_seconds"], data["grace"]) == ("1w", 604_800, "1d")
        assert data["items"][0] == {
            "name": "a",
            "task_id": "1",
            "action": "soft-delete",
            "reason": "expired",
            "resource_version": "3",
        }


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestTokenBucket:
    def test_a_burst_then_the_rate(self) -> None:
        """The bucket starts full (``burst``); after that, requests come at ``rate``."""
        t = FakeTime()
        bucket = TokenBucket(10, monotonic=t.monotonic, sleep=t.sleep)
        for _ in range(10):
            bucket()
        assert t.slept == []
        for _ in range(20):
            bucket()
        assert t.slept == pytest.approx([0.1] * 20)
        assert t.now == pytest.approx(102.0)

    def test_time_passing_refills_it(self) -> None:
        """Idle time earns tokens back, up to the burst."""
        t = FakeTime()
        bucket = TokenBucket(5, burst=2, monotonic=t.monotonic, sleep=t.sleep)
        bucket()
        bucket()
        t.now += 60
        bucket()
        bucket()
        assert t.slept == []
        bucket()
        assert t.slept == pytest.approx([0.2])

    def test_none_paces_nothing(self) -> None:
        """``rate=None`` never waits."""
        t = FakeTime()
        bucket = TokenBucket(None, monotonic=t.monotonic, sleep=t.sleep)
        for _ in range(1000):
            bucket()
        assert t.slept == []

    @pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf"), "20", True])
    def test_a_bad_rate_is_refused(self, rate: object) -> None:
        """A rate that is not a positive finite number raises InvalidInput."""
        with pytest.raises(InvalidInput):
            TokenBucket(rate)  # type: ignore[arg-type]
