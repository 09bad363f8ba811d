"""The compare-and-swap writer: applies a mutation to a task's state, and writes it.

The write path is optimistic concurrency (DESIGN.md, rules 1-3):

- every operation is a pure function of the state (``remstate.mutations``),
  applied to the last object seen and sent with that object's resourceVersion:
  uncontended, a write is one API request;
- on a Conflict the object is read again and the function applied again, with
  bounded, exponential, jittered backoff (``RetryPolicy``);
- under sustained contention writers take turns (``remstate.turns``): the
  writer that has just won holds the freshest object and would otherwise keep
  winning, and losers would run out of attempts;
- a write whose outcome is unknown (a timeout, a lost response) is retried the
  same way, and the retry recognises its own earlier success in the object it
  reads back: by the write id the attempt left on it (``ANNOTATION_WRITE_ID``),
  or, if another write landed since, by the ids the operation stores (the
  mutation finds them in the history). If retries run out with a write still
  unanswered, the caller gets ``OutcomeUnknown``.

History that outgrows the head moves to segments (``remstate.segments``)
within the same attempt, before the head write that takes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Generic, Protocol, TypeVar

from ulid import ULID

from remstate.cache import DEFAULT_CACHE_SIZE, LastSeen
from remstate.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    RemstateError,
    RetriesExhausted,
    StateNotFound,
    Unavailable,
)
from remstate.history import HistoryReader
from remstate.metrics import Metrics
from remstate.objects import StoredObject
from remstate.retry import RetryPolicy, remaining
from remstate.schema import (
    ANNOTATION_WRITE_ID,
    LABEL_MANAGED_BY,
    SCHEMA_VERSION,
    Clock,
    Policy,
    TaskState,
    decode_state,
    encode_state,
    object_name,
    plan_compaction,
    validate_task_id,
    value_bytes,
)
from remstate.segments import compact, discard_unreferenced
from remstate.store import Store
from remstate.turns import ANNOTATION_TURN, TURN_TTL, FreeWritesByTask, Turns

__all__ = [
    "ANNOTATION_WRITE_ID",
    "CLEANUP_DEADLINE",
    "Mutation",
    "Settings",
    "Writer",
    "expecting",
]

_R = TypeVar("_R")

#: A state change: the new state (None: nothing to write) and the operation's result.
Mutation = Callable[[TaskState], tuple[TaskState | None, _R]]

#: Seconds of the retry deadline kept for the write after a wait for a turn.
_WRITE_MARGIN = 0.5
#: Seconds that best-effort cleanup after an operation (giving back a turn,
#: deleting a deleted task's segments) may take in all: it is past the
#: operation's deadline, and what it leaves behind expires or is an orphan.
CLEANUP_DEADLINE = 2.0


#: The resourceVersion every write in this context must find (an HTTP
#: ``If-Match``): ``"*"`` for any existing state; None for no condition.
_EXPECTED: ContextVar[str | None] = ContextVar("remstate_expected_version", default=None)


@contextlib.contextmanager
def expecting(resource_version: str | None) -> Iterator[None]:
    """Within the block, a write applies only to the state at ``resource_version``.

    Any other version (or no state; ``"*"``: any existing state) raises
    ``PreconditionFailed`` and writes nothing. The write itself is the usual
    compare-and-swap from that version, so no other write can slip in between;
    one that does makes the retry find another version, and fail.
    """
    token = _EXPECTED.set(resource_version)
    try:
        yield
    finally:
        _EXPECTED.reset(token)


class _Stale(Conflict):
    """Internal: what we read is out of date (or gone, or taken); read again and re-apply.

    A Conflict, so the retry policy bounds and spaces these like any other.
    """


class Settings(Protocol):
    """What the writer reads from its manager: the store, the retry policy, the clock,
    the metrics, and the policy a task that stores none gets on its next write."""

    store: Store
    retry: RetryPolicy
    clock: Clock
    metrics: Metrics

    @property
    def default_policy(self) -> Policy: ...


class Writer:
    """Applies mutations to tasks' head objects with compare-and-swap writes; thread-safe.

    Shares the manager's cache of last-seen objects (``seen``) and history
    reader (whose filter-page cache learns the pages compaction writes).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        seen: LastSeen,
        history: HistoryReader,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._settings = settings
        self._seen = seen
        self._history = history
        #: Tasks this writer took a contended turn on: writes left before it steps
        #: aside, and whether contention was seen since. Bounded like ``seen``.
        self._free_writes = FreeWritesByTask(cache_size)

    # Read from the manager at each use, as they were when the manager held the
    # loop: a caller that sets ``manager.retry`` (say) changes its next write.
    @property
    def store(self) -> Store:
        return self._settings.store

    @property
    def retry(self) -> RetryPolicy:
        return self._settings.retry

    @property
    def clock(self) -> Clock:
        return self._settings.clock

    @property
    def metrics(self) -> Metrics:
        return self._settings.metrics

    def mutate(
        self,
        task_id: str,
        mutation: Mutation[_R],
        *,
        create: Mapping[str, Any] | None = None,
        verbatim: bool = False,
    ) -> tuple[TaskState, _R]:
        """Apply ``mutation`` with optimistic concurrency; return the state and result.

        ``create``: if given, a missing state is created with these options to
        ``TaskState.new``; if None, a missing state raises StateNotFound.
        ``verbatim``: write the state as the mutation returns it, its
        ``last_update`` and policy included (an import), rather than stamped
        by the clock and given the default policy.
        """
        validate_task_id(task_id)
        op: _Operation[_R] = _Operation(str(ULID()), verbatim=verbatim)
        op.expected = _EXPECTED.get()
        try:
            return self.retry.call(lambda: self._attempt(task_id, mutation, create, op))
        except (Unavailable, RetriesExhausted) as e:
            if not op.maybe_applied or isinstance(e, OutcomeUnknown):
                raise
            # A write of ours went unanswered and no later read found it: say so,
            # so that a caller does not repeat a step that may have been done.
            unknown = OutcomeUnknown(
                f"a write to task {task_id!r} may have committed: its answer never came "
                f"before retries ran out ({e})",
                task_id=task_id,
            )
            unknown.attempts = e.attempts
            raise unknown from e
        finally:
            if op.turns.holding:
                self._give_back_turn(task_id, op.turns)

    def delete(self, task_id: str, *, resource_version: str | None = None) -> bool:
        """Delete the task's state and its history segments. False if there was none.

        The head is deleted with preconditions on its uid and resourceVersion,
        so a write that lands meanwhile makes the delete retry on fresh state;
        with ``resource_version``, only that version is deleted: any other (or
        none) raises ``PreconditionFailed`` and nothing is deleted.
        """
        validate_task_id(task_id)
        if resource_version is not None and (
            not isinstance(resource_version, str) or not resource_version
        ):
            raise InvalidInput("resource_version must be a non-empty string")
        segments: list[tuple[str, str]] = []
        unknown: str | None = None  # the uid of a delete that may have gone through

        def attempt() -> bool:
            nonlocal segments, unknown
            obj = self._seen.read(task_id)
            if obj is None:
                if unknown is None and resource_version is not None:
                    raise PreconditionFailed(task_id, resource_version, None)
                return unknown is not None
            if unknown is not None and obj.uid != unknown:
                # Ours went through, and the task was created again since: keep that one.
                return True
            if resource_version is not None and obj.resource_version != resource_version:
                # Raised from inside the retried attempt, but not a Conflict: not retried.
                raise PreconditionFailed(task_id, resource_version, obj.resource_version)
            try:
                # An inconsistent state is still deleted, with its segments.
                segments = [(s.name, s.uid) for s in decode_state(obj, check=False).segments]
            except RemstateError:
                segments = []  # unreadable: cleanup (or, in a cluster, GC) removes them
            self._seen.forget(task_id)
            try:
                self.store.delete(obj.name, uid=obj.uid, resource_version=obj.resource_version)
            except NotFound:
                return unknown is not None
            except Unavailable as e:
                unknown = obj.uid
                maybe_applied.append(e.maybe_applied)
                raise
            return True

        maybe_applied: list[bool] = []
        try:
            deleted = self.retry.call(attempt)
        except (Unavailable, RetriesExhausted) as e:
            if not any(maybe_applied) or isinstance(e, OutcomeUnknown):
                raise
            raise OutcomeUnknown(
                f"the delete of task {task_id!r} may have gone through: its answer never "
                f"came before retries ran out ({e})",
                task_id=task_id,
            ) from e
        if deleted and segments:
            # Best effort: a segment left behind is an orphan, which cleanup removes.
            _after_the_deadline(lambda: self._delete_segments(segments))
        return deleted

    def _delete_segments(self, segments: Sequence[tuple[str, str]]) -> None:
        for name, uid in segments:
            with contextlib.suppress(RemstateError):
                self.store.delete(name, uid=uid or None)

    def _attempt(
        self,
        task_id: str,
        mutation: Mutation[_R],
        create: Mapping[str, Any] | None,
        op: _Operation[_R],
    ) -> tuple[TaskState, _R]:
        if op.conflicted:
            # The previous attempt's compare-and-swap lost: this one retries it.
            op.conflicted = False
            self.metrics.conflicts_retried.inc()
        obj, from_cache = self._write_from(task_id, op)
        committed = op.committed(obj)
        if committed is None and op.expected is not None:
            self._check_expected(task_id, obj, from_cache, op.expected)
        if committed is not None:
            return committed  # an earlier attempt committed; its response was lost
        state, new, result = self._decide(task_id, obj, from_cache, mutation, create)
        if new is None:
            return state, result
        if not op.verbatim:
            new = dataclasses.replace(
                new,
                last_update=self.clock(),
                # A state created now, or written before policies, stores the defaults.
                policy=new.policy.stored_or(self._settings.default_policy),
            )
        write_id = op.next_write_id()
        if obj is None and plan_compaction(new) is not None:
            # Segments need the head's uid: create the bare head first.
            self._write(task_id, None, state, write_id, op)
            raise _Stale("created the head; now the history")
        new = self._commit(task_id, obj, new, write_id=write_id, op=op, result=result)
        op.turns.holding = False  # our write dropped the turn annotation
        if op.turns.took and op.turns.contended:
            self._free_writes.grant(task_id)
        return new, result

    def _check_expected(
        self, task_id: str, obj: StoredObject | None, from_cache: bool, expected: str
    ) -> None:
        """Refuse, with PreconditionFailed, a state not at ``expected`` (read afresh to be sure)."""
        actual = None if obj is None else obj.resource_version
        if actual is not None and expected in ("*", actual):
            return
        if from_cache:
            self._seen.forget(task_id)
            raise _Stale("checking the expected version on a fresh read")
        raise PreconditionFailed(task_id, expected, actual)

    def _write_from(self, task_id: str, op: _Operation[_R]) -> tuple[StoredObject | None, bool]:
        """The object this attempt applies the mutation to, and whether it is a remembered one.

        The last one seen; under sustained contention, the one our turn returned.
        """
        obj, from_cache = self._seen.last_seen(task_id)
        if op.attempts == 0 and not op.turns.stepped_aside and self._free_writes.spent(task_id):
            op.turns.step_aside()
        if obj is not None and self.retry.max_attempts > 1:
            # One attempt (RetryPolicy.none()) never queues: waiting for a turn
            # is a retry in all but name, and the write is a compare-and-swap anyway.
            waited = self._await_turn(task_id, obj, op.turns, fresh=not from_cache)
            from_cache = from_cache and waited is obj
            obj = waited
        return obj, from_cache

    def _commit(
        self,
        task_id: str,
        obj: StoredObject | None,
        new: TaskState,
        *,
        write_id: str,
        op: _Operation[_R],
        result: _R,
    ) -> TaskState:
        """Compact ``new`` into segments as needed and write the head; the state written.

        Every write id is kept in ``op`` when the head write is Unavailable (a
        later read that finds it proves the write committed); the outcome is
        unknown only if the error says it may have applied. Otherwise the
        segments it created and the head did not take are deleted.
        """
        new, created = self._segments_first(task_id, obj, new)
        try:
            self._write(task_id, obj, new, write_id, op)
        except Unavailable as e:
            op.unknown[write_id] = (new, result)
            if e.maybe_applied:
                # The write may yet commit (and refer to our segments): keep them.
                # If it did not, the segments are orphans, which cleanup removes.
                op.maybe_applied = True
            elif created:  # refused (429, 503, connection refused): the head says which it took
                self._discard(task_id, created)
            raise
        except RemstateError as e:
            if isinstance(e, Conflict):
                op.turns.lost()
                self._free_writes.contention_seen(task_id)
            # Refused for certain. The head, read afresh, says which segments it took.
            if created:
                self._discard(task_id, created)
            raise
        return new

    def _segments_first(
        self, task_id: str, obj: StoredObject | None, new: TaskState
    ) -> tuple[TaskState, list[StoredObject]]:
        """The state to write, its oldest history moved to segments created now; and those.

        Called before the head write, outside its try: until the head is sent,
        nothing of the attempt can have applied, whatever a segment create's
        Unavailable says, so such a failure never makes the outcome unknown.
        """
        created: list[StoredObject] = []
        if obj is None:
            return new, created
        try:
            return compact(self.store, self._history, obj, new, created), created
        except Unavailable:
            raise  # the segments created so far are orphans, which cleanup removes
        except RemstateError:
            if created:
                self._discard(task_id, created)
            raise

    def _discard(self, task_id: str, created: list[StoredObject]) -> None:
        discard_unreferenced(self.store, lambda: self._seen.read(task_id), created)

    def _await_turn(
        self, task_id: str, obj: StoredObject, turns: Turns, *, fresh: bool
    ) -> StoredObject | None:
        """The object to write from: ``obj``, or, under sustained contention, ours by turn.

        Long and branchy (grade C) on purpose: one loop of patch, refusal,
        occasional read and takeover, whose states are easier to check together
        than spread over helpers.

        An operation that queues (see ``remstate.turns``) first sleeps out its
        patience, with no reads. Then it takes the turn with a patch that
        applies only if the turn is free, and returns the object in place of a
        read. While another writer holds it, the patch is refused (a small
        answer, where a read would carry the whole object) and tried again
        after short pauses; now and then a read tells who holds it, so that a
        turn that stays in sight for ``TURN_TTL`` is taken over. All within
        the retry deadline.
        """
        if obj.annotations.get(ANNOTATION_TURN) not in (None, turns.token):
            self._free_writes.contention_seen(task_id)
        if not turns.queued(obj.annotations):
            return obj
        rest = min(turns.patience_left(), self._time_left(turns))
        if rest > 0:
            time.sleep(rest)
        elif fresh and obj.annotations.get(ANNOTATION_TURN) == turns.token:
            return obj  # we took it before, and a write of ours lost to an older turn
        name = object_name(task_id)
        expected: str | None = None  # free; or a turn that has expired in our sight
        last_read = time.monotonic() if fresh and rest <= 0 else None
        while self._time_left(turns) > 0:
            try:
                taken = self.store.annotate(
                    name, {ANNOTATION_TURN: turns.token}, expect={ANNOTATION_TURN: expected}
                )
            except Conflict:
                expected = None
                now = time.monotonic()
                if last_read is None or now - last_read >= TURN_TTL / 2:
                    current, last_read = self._seen.read(task_id), now
                    if current is None:
                        return None
                    holder = current.annotations.get(ANNOTATION_TURN)
                    if holder == turns.token:
                        return current
                    if holder is None or not turns.must_wait(current.annotations):
                        expected = holder
                        continue
                time.sleep(turns.pause())
                continue
            except NotFound:
                self._seen.forget(task_id)
                raise _Stale("deleted meanwhile") from None
            turns.holding = turns.took = True
            self._seen.remember(task_id, taken)
            return taken
        return obj  # the deadline holds: try, and let the retry policy stop

    def _time_left(self, turns: Turns) -> float:
        """Seconds left to wait for a turn: to the retry deadline, less time for the write."""
        left = remaining()
        if left is None:
            left = turns.started + self.retry.deadline - time.monotonic()
        return left - _WRITE_MARGIN

    def _give_back_turn(self, task_id: str, turns: Turns) -> None:
        """Best effort: drop our turn after an operation that did not write.

        Only if it is still ours; if this fails, the turn expires.
        """
        _after_the_deadline(
            lambda: self._seen.remember(
                task_id,
                self.store.annotate(
                    object_name(task_id),
                    {ANNOTATION_TURN: None},
                    expect={ANNOTATION_TURN: turns.token},
                ),
            )
        )

    def _decide(
        self,
        task_id: str,
        obj: StoredObject | None,
        from_cache: bool,
        mutation: Mutation[_R],
        create: Mapping[str, Any] | None,
    ) -> tuple[TaskState, TaskState | None, _R]:
        """Apply the mutation to what we have: (state, new state or None for no write, result).

        A refusal or a "nothing to do" decided on a remembered object is
        confirmed on a fresh read first: another writer may have changed it.
        """
        if obj is None:
            if create is None:
                raise StateNotFound(task_id)
            state = TaskState.new(task_id, clock=self.clock, **create)
        else:
            state = self._seen.decode(task_id, obj)
        try:
            new, result = mutation(state)
        except RemstateError:
            if from_cache:
                self._seen.forget(task_id)
                raise _Stale("re-reading before refusing") from None
            raise
        if new is None:
            if obj is None:
                return state, state, result  # create it, though nothing else changed
            if from_cache:
                self._seen.forget(task_id)
                raise _Stale("re-reading before a no-op")
        return state, new, result

    def _write(
        self,
        task_id: str,
        old: StoredObject | None,
        state: TaskState,
        op_id: str,
        op: _Operation[Any],
    ) -> StoredObject:
        """One create or compare-and-swap replace; remembers what was written.

        A lost compare-and-swap (Conflict, or a create that another writer beat)
        is marked on ``op``, so the next attempt counts as a retried conflict.

        Labels and annotations that are not remstate's (added with kubectl, say)
        are carried over. Any write makes a soft-deleted task active again: it
        is in use.
        """
        data, labels, annotations = encode_state(state)
        annotations[ANNOTATION_WRITE_ID] = op_id
        size = value_bytes(data)
        name = object_name(task_id)
        try:
            if old is None:
                written = self.store.create(
                    StoredObject(name=name, data=data, labels=labels, annotations=annotations)
                )
            else:
                written = self.store.replace(
                    StoredObject(
                        name=name,
                        data=data,
                        labels={**_foreign(old.labels), **labels},
                        annotations={**_foreign(old.annotations), **annotations},
                        resource_version=old.resource_version,
                        owner_references=old.owner_references,
                    )
                )
        except AlreadyExists:
            self._seen.forget(task_id)
            op.conflicted = True
            raise _Stale("created by another writer first") from None
        except NotFound:
            self._seen.forget(task_id)
            if old is None:
                raise  # a create found no namespace: retrying cannot help
            raise _Stale("deleted meanwhile") from None
        except (Conflict, Unavailable) as e:
            self._seen.forget(task_id)
            op.conflicted = isinstance(e, Conflict)
            raise
        self.metrics.state_size.observe(size)
        # What we wrote is the current schema, whatever version it was read at.
        self._seen.remember(
            task_id, written, dataclasses.replace(state, schema_version=SCHEMA_VERSION)
        )
        return written


class _Operation(Generic[_R]):
    """One call across its attempts: the writes whose outcome is unknown, by write id.

    Each attempt writes with an id of its own. A write that failed for certain
    is forgotten; one that timed out is kept, so that if it (or a late copy of
    it) committed, a later attempt that reads it back returns its result.
    """

    def __init__(self, op_id: str, *, verbatim: bool = False) -> None:
        self.id = op_id
        self.verbatim = verbatim
        #: The version the caller requires (``expecting``), or None.
        self.expected: str | None = None
        self.attempts = 0
        self.unknown: dict[str, tuple[TaskState, _R]] = {}
        #: The last attempt's compare-and-swap write lost to another writer.
        self.conflicted = False
        #: A write was sent and its answer lost: until one attempt succeeds, it may have committed.
        self.maybe_applied = False
        self.turns = Turns(op_id)

    def committed(self, obj: StoredObject | None) -> tuple[TaskState, _R] | None:
        """What an earlier attempt wrote, if ``obj`` is that write (its answer was lost)."""
        if obj is None or not self.unknown:
            return None
        return self.unknown.get(obj.annotations.get(ANNOTATION_WRITE_ID, ""))

    def next_write_id(self) -> str:
        self.attempts += 1
        return f"{self.id}.{self.attempts}"


def _after_the_deadline(cleanup: Callable[[], None]) -> None:
    """Run best-effort cleanup once, within ``CLEANUP_DEADLINE``, never raising our errors.

    It runs after the operation's retry policy has returned, where no deadline
    would bound its requests: against a hung server each would wait out the
    store's own timeouts (30 s). A policy of one attempt sets a short one.
    """
    once = RetryPolicy(max_attempts=1, deadline=CLEANUP_DEADLINE, retry_transient=False)
    with contextlib.suppress(RemstateError):
        once.call(cleanup)


def _foreign(meta: Mapping[str, str]) -> dict[str, str]:
    """The labels or annotations that remstate does not own."""
    return {
        k: v for k, v in meta.items() if not k.startswith("remstate.io/") and k != LABEL_MANAGED_BY
    }
