"""Orphan removal: history segments and snapshots that no living head keeps.

An orphan is left by a crash or by a head deleted without its parts (the
garbage collector may not run, and does not on the test control plane):

- a segment or a snapshot whose head is gone (``head-gone``), or was deleted
  and made again (``head-replaced``: the ownerReference's uid is not the
  head's), as the garbage collector would judge it;
- a segment that its living head does not refer to (``unreferenced``): a
  writer created it and crashed, or lost its compare-and-swap, before the
  head took it. One of the head's snapshots may still refer to it: it is
  kept while that snapshot lives.

The constraints this module lives under:

- **Decided from metadata.** Segments and snapshots are listed page by page,
  metadata only, by label; a head's segment numbers come from its
  ``remstate.io/segments`` annotation, and heads and snapshots of a task from
  one metadata-only list by the task's label. Only a head written before that
  annotation existed (or whose annotation is unreadable) is read in full,
  once, to learn its index.
- **Nothing young.** An object created less than ``grace`` ago is never an
  orphan: a live writer may be about to take the segment it just wrote.
- **Careful deletes.** Before each delete the head is read again (a plain
  get, so a head the labels would miss still counts) and the verdict taken
  afresh; the delete carries the object's uid, so an object made again under
  the same name is not touched; ``pace()`` is called before each delete (the
  cleanup's rate limiter).

The verdicts are pure functions (:func:`judge`); the scan and the deletes are
the I/O around them.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from remstate.errors import Conflict, Gone, InvalidInput, NotFound, RemstateError
from remstate.objects import OwnerReference, StoredObject
from remstate.schema import (
    ANNOTATION_SEGMENTS,
    ANNOTATION_SNAPSHOT_KEPT,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_TASK,
    MANAGED_BY,
    ROLE_SEGMENT,
    ROLE_SNAPSHOT,
    ROLE_STATE,
    decode_state,
    parse_ranges,
)
from remstate.store import Store

__all__ = [
    "KIND_SEGMENT",
    "KIND_SNAPSHOT",
    "REASON_HEAD_GONE",
    "REASON_HEAD_REPLACED",
    "REASON_UNREFERENCED",
    "Head",
    "Orphan",
    "OrphanReport",
    "Skipped",
    "judge",
    "remove_orphans",
]

log = logging.getLogger("remstate.orphans")

KIND_SEGMENT: Final = "segment"
KIND_SNAPSHOT: Final = "snapshot"
REASON_HEAD_GONE: Final = "head-gone"
REASON_HEAD_REPLACED: Final = "head-replaced"
REASON_UNREFERENCED: Final = "unreferenced"

#: Segments and snapshots of remstate: what the scan lists.
SELECTOR: Final = (
    f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLE} in ({ROLE_SEGMENT},{ROLE_SNAPSHOT})"
)
#: ``task-{id}-state-h{n}`` (segment) and ``task-{id}-state-s{n}`` (snapshot).
_PART_NAME: Final = re.compile(r"(?P<head>.+)-(?P<letter>[hs])(?P<n>\d{1,6})")
#: Tasks whose head and snapshots are remembered during a scan. Objects come in
#: name order, so a task's parts are next to each other: a few suffice.
_TASKS_REMEMBERED: Final = 32
#: Times a scan starts again after its continue token expired.
_RESTARTS: Final = 3


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Orphan:
    """An object removed (or, in a dry run, to remove), and why."""

    name: str
    kind: str  # KIND_SEGMENT or KIND_SNAPSHOT
    reason: str  # REASON_*
    head: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """An orphan found but not removed, and why (it changed, or the delete failed)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrphanReport:
    """What :func:`remove_orphans` saw and did.

    ``removed`` holds what a dry run would remove. ``young`` counts objects
    within the grace period; ``skipped`` the orphans that the re-check or the
    delete's preconditions saved, or that someone else removed first;
    ``errors`` the deletes that failed otherwise.
    """

    dry_run: bool
    scanned: int = 0
    young: int = 0
    removed: tuple[Orphan, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[Skipped, ...] = ()

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` (KIND_SEGMENT, KIND_SNAPSHOT) were removed."""
        return sum(1 for orphan in self.removed if orphan.kind == kind)


# --- verdicts (pure) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    """What the verdicts need of a head: its identity and the segment numbers it keeps.

    ``keeps`` is ``None`` when they cannot be told (an unreadable head): its
    unreferenced segments are then kept. ``snapshots_keep`` are the numbers its
    living snapshots refer to, ``None`` if one of them does not say.
    """

    name: str
    uid: str
    keeps: frozenset[int] | None
    snapshots_keep: frozenset[int] | None = field(default=frozenset())


def part_of(obj: StoredObject) -> tuple[str, int] | None:
    """The head's name and the number of a segment or snapshot, from its own metadata.

    The ownerReference names the head; without one, the object's name does.
    ``None``: the name is not one remstate gives.
    """
    match = _PART_NAME.fullmatch(obj.name)
    if match is None:
        return None
    owner = _owner(obj)
    return (owner.name if owner is not None else match["head"]), int(match["n"])


def _owner(obj: StoredObject) -> OwnerReference | None:
    for ref in obj.owner_references:
        if ref.kind == "ConfigMap" and ref.api_version == "v1":
            return ref
    return None


def _owner_uid(obj: StoredObject) -> str:
    owner = _owner(obj)
    return owner.uid if owner is not None else ""


def referred(annotations: Mapping[str, str]) -> frozenset[int] | None:
    """The segment numbers a head or snapshot lists; ``None`` if absent or unreadable."""
    text = annotations.get(ANNOTATION_SEGMENTS)
    if text is None:
        return None
    try:
        return parse_ranges(text)
    except InvalidInput:
        return None


def is_young(obj: StoredObject, *, now: datetime, grace: timedelta) -> bool:
    """Whether ``obj`` is within the grace period (an object of unknown age is)."""
    created = obj.creation_timestamp
    return created is None or now - created < grace


def judge(
    obj: StoredObject,
    kind: str,
    n: int,
    head: Head | None,
    kept: frozenset[int] | None = frozenset(),
) -> str | None:
    """The reason ``obj`` (a segment or a snapshot, number ``n``) is an orphan, or ``None``.

    ``kept``: the segment numbers the task's kept snapshots (taken at a purge,
    see ``snapshots.take_snapshot``) refer to, ``None`` if one does not say:
    a restore of such a snapshot needs them, so they outlive the head too.
    Age is not judged here (see :func:`is_young`).
    """
    if _kept_on_purpose(obj, kind, n, kept):
        return None
    if head is None:
        return REASON_HEAD_GONE
    if kind == KIND_SEGMENT and head.keeps is not None and n in head.keeps:
        return None  # the head's index names it (a head restored from a kept snapshot)
    owner_uid = _owner_uid(obj)
    if owner_uid and owner_uid != head.uid:
        return REASON_HEAD_REPLACED
    referenced = (
        kind == KIND_SNAPSHOT
        or head.keeps is None
        or head.snapshots_keep is None
        or n in head.snapshots_keep
    )
    return None if referenced else REASON_UNREFERENCED


def _kept_on_purpose(obj: StoredObject, kind: str, n: int, kept: frozenset[int] | None) -> bool:
    """A snapshot kept at a purge, or a segment such a snapshot refers to."""
    if kind == KIND_SNAPSHOT:
        return obj.annotations.get(ANNOTATION_SNAPSHOT_KEPT) == "true"
    return kept is None or n in kept


# --- reading heads -------------------------------------------------------------------------


def _pages(
    store: Store, selector: str, page_size: int, *, metadata_only: bool = True
) -> Iterator[Sequence[StoredObject]]:
    """Pages of a list, in name order; an expired continue token starts it again after
    the last name seen (both backends list in name order)."""
    token: str | None = None
    last = ""
    restarts = 0
    while True:
        try:
            page = store.list(
                label_selector=selector,
                limit=page_size,
                continue_token=token,
                metadata_only=metadata_only,
            )
        except Gone:
            if token is None or restarts >= _RESTARTS:
                raise
            restarts += 1
            token = None
            continue
        items = [item for item in page.items if item.name > last]
        if items:
            last = items[-1].name
            yield items
        token = page.continue_token
        if not token:
            return


class _Heads:
    """Heads and their snapshots as the scan sees them, read from metadata, a few tasks
    remembered; a head with no segments annotation is read in full, once."""

    def __init__(self, store: Store, page_size: int) -> None:
        self._store = store
        self._page_size = page_size
        self._tasks: OrderedDict[str, list[StoredObject]] = OrderedDict()
        self._decoded: dict[tuple[str, str], frozenset[int] | None] = {}

    def _task(self, task: str) -> list[StoredObject]:
        if task in self._tasks:
            self._tasks.move_to_end(task)
            return self._tasks[task]
        selector = (
            f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_TASK}={task},"
            f"{LABEL_ROLE} in ({ROLE_STATE},{ROLE_SNAPSHOT})"
        )
        items = [item for page in _pages(self._store, selector, self._page_size) for item in page]
        self._tasks[task] = items
        if len(self._tasks) > _TASKS_REMEMBERED:
            self._tasks.popitem(last=False)
        return items

    def kept(self, task: str) -> frozenset[int] | None:
        """The segment numbers the task's kept snapshots refer to (``None``: one does not say)."""
        numbers: set[int] = set()
        for item in self._task(task):
            if item.annotations.get(ANNOTATION_SNAPSHOT_KEPT) != "true":
                continue
            listed = referred(item.annotations)
            if listed is None:
                return None
            numbers |= listed
        return frozenset(numbers)

    def seen(self, task: str, name: str, *, index: bool) -> Head | None:
        """The head ``name`` of ``task`` as the metadata list shows it (``None``: not there).

        ``index``: learn which segments it keeps (a snapshot's verdict does not need it).
        """
        items = self._task(task)
        for item in items:
            if item.name == name and item.labels.get(LABEL_ROLE) == ROLE_STATE:
                return self._head(item, [i for i in items if _belongs(i, item)], index=index)
        return None

    def fresh(self, task: str, name: str, *, index: bool) -> Head | None:
        """The head ``name`` read again (a get), and its snapshots listed again."""
        try:
            obj = self._store.get(name)
        except NotFound:
            return None
        self._tasks.pop(task, None)
        return self._head(obj, [i for i in self._task(task) if _belongs(i, obj)], index=index)

    def _head(self, obj: StoredObject, snapshots: Sequence[StoredObject], *, index: bool) -> Head:
        keeps = referred(obj.annotations)
        if keeps is None:
            keeps = self._decode(obj) if index else None
        snapshots_keep: set[int] | None = set()
        for snapshot in snapshots:
            listed = referred(snapshot.annotations)
            if listed is None or snapshots_keep is None:
                snapshots_keep = None  # a snapshot that does not say keeps every segment
            else:
                snapshots_keep |= listed
        return Head(
            name=obj.name,
            uid=obj.uid,
            keeps=keeps,
            snapshots_keep=None if snapshots_keep is None else frozenset(snapshots_keep),
        )

    def _decode(self, obj: StoredObject) -> frozenset[int] | None:
        """The segment numbers of a head written before the annotation: from its index."""
        key = (obj.uid, obj.resource_version)
        if key not in self._decoded:
            try:
                full = obj if obj.data is not None else self._store.get(obj.name)
                if full.uid != obj.uid:
                    return None  # made again meanwhile: tell nothing from it
                numbers = frozenset(s.n for s in decode_state(full, check=False).segments)
            except NotFound:
                return None
            except RemstateError as e:  # corrupt, or newer: keep its segments
                log.warning("head %s unreadable, its segments kept: %s", obj.name, e)
                numbers = None
            self._decoded[key] = numbers
        return self._decoded[key]


def _belongs(snapshot: StoredObject, head: StoredObject) -> bool:
    """Whether ``snapshot`` is a living snapshot of ``head`` (owned by this very head)."""
    if snapshot.labels.get(LABEL_ROLE) != ROLE_SNAPSHOT:
        return False
    owner = _owner(snapshot)
    if owner is None:
        return snapshot.name.startswith(head.name + "-s")
    return owner.uid == head.uid


# --- the scan ------------------------------------------------------------------------------


def remove_orphans(
    store: Store,
    *,
    now: datetime,
    grace: timedelta,
    dry_run: bool = False,
    pace: Callable[[], None] = lambda: None,
    page_size: int = 100,
) -> OrphanReport:
    """Remove the segments and snapshots no living head keeps, older than ``grace``.

    Args:
        store: the store to clean.
        now: the time to measure ages against (aware UTC).
        grace: how old an orphan must be (by creation time) to be removed.
        dry_run: find and report them; delete nothing.
        pace: called before each delete (a rate limiter that may block).
        page_size: objects per list request.

    Raises:
        InvalidInput: ``page_size`` is not positive, ``grace`` is negative, or
            ``now`` is naive.
        StoreError: a list failed (a failed delete is in the report instead).
    """
    if page_size < 1:
        raise InvalidInput(f"page_size must be positive, not {page_size}")
    if grace < timedelta(0):
        raise InvalidInput(f"grace must not be negative, not {grace}")
    if now.tzinfo is None:
        raise InvalidInput("now must be an aware datetime (UTC), not a naive one")
    scan = _Scan(store, _Heads(store, page_size), dry_run=dry_run, pace=pace)
    for page in _pages(store, SELECTOR, page_size):
        for obj in page:
            scan.report.scanned += 1
            if is_young(obj, now=now, grace=grace):
                scan.report.young += 1
            else:
                scan.consider(obj)
    return scan.report.freeze(dry_run)


@dataclass
class _Tally:
    """The report as it grows."""

    scanned: int = 0
    young: int = 0
    removed: list[Orphan] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[Skipped] = field(default_factory=list)

    def freeze(self, dry_run: bool) -> OrphanReport:
        return OrphanReport(
            dry_run=dry_run,
            scanned=self.scanned,
            young=self.young,
            removed=tuple(self.removed),
            skipped=tuple(self.skipped),
            errors=tuple(self.errors),
        )


class _Scan:
    """One object's steps, in order: verdict from metadata, re-check, pace, delete."""

    def __init__(
        self, store: Store, heads: _Heads, *, dry_run: bool, pace: Callable[[], None]
    ) -> None:
        self.store = store
        self.heads = heads
        self.dry_run = dry_run
        self.pace = pace
        self.report = _Tally()

    def consider(self, obj: StoredObject) -> None:
        """Judge an object past its grace period; remove it if it is an orphan."""
        kind = KIND_SNAPSHOT if obj.labels.get(LABEL_ROLE) == ROLE_SNAPSHOT else KIND_SEGMENT
        part = part_of(obj)
        task = obj.labels.get(LABEL_TASK)
        if part is None or not task:
            return  # not a name, or not labels, remstate gives: not ours to judge
        head_name, n = part
        index = kind == KIND_SEGMENT
        reason = judge(
            obj, kind, n, self.heads.seen(task, head_name, index=index), self.heads.kept(task)
        )
        if reason is None:
            return
        if self.dry_run:
            orphan = Orphan(name=obj.name, kind=kind, reason=reason, head=head_name)
            self.report.removed.append(orphan)
            _log("would remove", orphan, obj)
            return
        head = self.heads.fresh(task, head_name, index=index)  # lists the task's snapshots again
        reason = judge(obj, kind, n, head, self.heads.kept(task))
        if reason is None:
            self.report.skipped.append(Skipped(obj.name, "its head keeps it, read again"))
            return
        orphan = Orphan(name=obj.name, kind=kind, reason=reason, head=head_name)
        self.pace()
        if self._delete(obj):
            self.report.removed.append(orphan)
            _log("removed", orphan, obj)

    def _delete(self, obj: StoredObject) -> bool:
        """Delete ``obj`` if it still has its uid; whether it was deleted (else reported)."""
        try:
            self.store.delete(obj.name, uid=obj.uid)
        except NotFound:
            self.report.skipped.append(Skipped(obj.name, "already gone"))
        except Conflict:
            self.report.skipped.append(Skipped(obj.name, "made again under the same name"))
        except RemstateError as e:
            self.report.errors.append(Skipped(obj.name, f"{type(e).__name__}: {e}"))
            log.warning("orphan %s not removed: %s", obj.name, e)
        else:
            return True
        return False


def _log(what: str, orphan: Orphan, obj: StoredObject) -> None:
    log.info(
        "%s orphan %s %s (%s)",
        what,
        orphan.kind,
        orphan.name,
        orphan.reason,
        extra={
            "object": orphan.name,
            "kind": orphan.kind,
            "reason": orphan.reason,
            "head": orphan.head,
            "uid": obj.uid,
            "resource_version": obj.resource_version,
        },
    )
