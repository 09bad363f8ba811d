"""Repairing a damaged head: from what was read to the state to write, with every change named.

Design constraint (DESIGN.md rule 5): **a repair never throws away data it
could keep, and never drops anything silently.** The stored object is copied
into a snapshot before a repair is written; what the repair cannot keep (an
unreadable value, an entry that does not parse, the records of a segment
that is gone) is named as a :class:`Loss`, and stays in that snapshot. Each
change is named as a :class:`Repair`, by the problem it fixes.

Two pure steps, so that the caller reads the segments in between:
:func:`prepare` makes the head readable (identity, values, entry timestamps)
and says which segments its index names; :func:`finish` checks those segments
as read, fixes the index, the IDs and the counter, and re-validates the
result. Nothing here does I/O. A state written by a newer remstate is never
repaired: :func:`prepare` says it is unsupported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from remstate.errors import InvalidInput, RemstateError
from remstate.objects import StoredObject
from remstate.schema.datavalue import decode_value
from remstate.schema.encoding import encode_state
from remstate.schema.layout import KEY_FEEDBACK_RESOLUTIONS, KEY_HISTORY_INDEX, last_update_of
from remstate.schema.naming import ANNOTATION_SEGMENTS, LABEL_STATUS, object_name, parse_ranges
from remstate.schema.problems import MalformedError, Problem, ProblemCode
from remstate.schema.repair_history import (
    fix_counter,
    fix_duplicates,
    fix_index,
    rebuild_index,
    segment_problems,
)
from remstate.schema.state import TaskState
from remstate.schema.validation import find_problems, salvage_state
from remstate.schema.values import SCHEMA_VERSION, Status, format_timestamp, parse_timestamp

__all__ = [
    "Loss",
    "Prepared",
    "Repair",
    "RepairResult",
    "finish",
    "prepare",
    "problems_of",
    "repairable",
    "segment_problems",
]

#: What no repair fixes: no data to repair, or a newer remstate's state (never guessed at).
_NOT_REPAIRABLE = frozenset({ProblemCode.NO_DATA, ProblemCode.UNSUPPORTED_SCHEMA_VERSION})
_ARRAYS = ("iteration_history", "feedback_history", "error_messages")
_OBJECTS = ("metadata", KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS)
#: Each array's timestamp fields: required ones get ``last_update``, optional ones ``None``.
_TIMES: dict[str, dict[str, bool]] = {
    "iteration_history": {"started_at": True},
    "feedback_history": {"timestamp": True, "resolved_at": False},
    "error_messages": {"timestamp": False},
}
_ENTRY = re.compile(r"^(iteration_history|feedback_history|error_messages)\[(\d+)\]")
_EXCERPT = 120


@dataclass(frozen=True, slots=True)
class Repair:
    """One problem fixed: its kind, the data key, and what was done."""

    kind: ProblemCode
    key: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "key": self.key, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Loss:
    """What a repair could not keep in the state: named, and kept in the snapshot."""

    key: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Prepared:
    """The head made readable; ``state`` is None when it is unsupported or has no data."""

    task_id: str
    state: TaskState | None
    unsupported: bool
    repairs: tuple[Repair, ...] = ()
    losses: tuple[Loss, ...] = ()
    #: The index could not be read: the segments the head's ``remstate.io/segments``
    #: annotation names (written with it), from which :func:`finish` rebuilds it.
    rebuild_from: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class RepairResult:
    """The state to write, what was repaired and lost, and what problems remain in it."""

    state: TaskState | None
    unsupported: bool
    repairs: tuple[Repair, ...] = ()
    losses: tuple[Loss, ...] = ()
    remaining: tuple[Problem, ...] = field(default=())


def repairable(problem: Problem) -> bool:
    """Whether :func:`finish` fixes a problem of this kind."""
    return problem.code not in _NOT_REPAIRABLE


def problems_of(obj: StoredObject) -> list[Problem]:
    """Every problem of a head (``find_problems``), an older schema version included."""
    problems = find_problems(obj)
    version = None if obj.data is None else _version(obj.data)
    if version is not None and version < SCHEMA_VERSION:
        problems.append(_outdated(version))
    return problems


def _outdated(version: int) -> Problem:
    return Problem(
        "schema_version",
        ProblemCode.OUTDATED_SCHEMA_VERSION,
        f"version {version}, older than {SCHEMA_VERSION}: a repair rewrites it",
    )


def _version(data: Mapping[str, str]) -> int | None:
    raw = data.get("schema_version")
    if raw is None:
        return 0
    text = raw.strip()
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT else f"{text[:_EXCERPT]}... ({len(text)} characters)"


class _Log:
    def __init__(self) -> None:
        self.repairs: list[Repair] = []
        self.losses: list[Loss] = []

    def fix(self, kind: ProblemCode, key: str, detail: str) -> None:
        self.repairs.append(Repair(kind, key, detail))

    def lose(self, key: str, detail: str) -> None:
        self.losses.append(Loss(key, detail))


def prepare(obj: StoredObject, task_id: str, *, now: datetime) -> Prepared:
    """Make the head readable: its identity, each value, each entry's timestamps.

    ``task_id`` is the task the object is named for; ``now`` stands in for a
    ``last_update`` that neither the data, its annotation nor the creation time gives.
    """
    data = obj.data
    if data is None:
        return Prepared(task_id, None, unsupported=False)
    version = _version(data)
    if version is not None and version > SCHEMA_VERSION:
        return Prepared(task_id, None, unsupported=True)
    log = _Log()
    patched = dict(data)
    if version is None:
        log.fix(ProblemCode.BAD_VALUE, "schema_version", "not a number: read as the current one")
        log.lose("schema_version", f"the stored value {_excerpt(data['schema_version'])!r}")
        patched["schema_version"] = str(SCHEMA_VERSION)
    last_update = _identity(obj, patched, task_id, now, log)
    _values(patched, last_update, version or SCHEMA_VERSION, log)
    state, problems = salvage_state(dataclasses.replace(obj, data=patched))
    for problem in problems:
        _left_out(problem, log)
    if state is not None and version == 0:
        log.fix(
            ProblemCode.OUTDATED_SCHEMA_VERSION,
            "schema_version",
            f"migrated from version 0 to {SCHEMA_VERSION}",
        )
    rebuild_from = frozenset[int]()
    if KEY_HISTORY_INDEX in data and KEY_HISTORY_INDEX not in patched:
        with contextlib.suppress(InvalidInput):  # an annotation as damaged: nothing to go on
            rebuild_from = parse_ranges(obj.annotations.get(ANNOTATION_SEGMENTS, ""))
    return Prepared(task_id, state, False, tuple(log.repairs), tuple(log.losses), rebuild_from)


def _identity(
    obj: StoredObject, patched: dict[str, str], task_id: str, now: datetime, log: _Log
) -> str:
    """task_id, status and last_update, without which there is no state; the last_update."""
    stored_id = patched.get("task_id")
    if stored_id is None:
        log.fix(ProblemCode.MISSING_KEY, "task_id", f"set to {task_id!r}, named by the object")
    elif stored_id != task_id:
        log.fix(ProblemCode.TASK_ID_MISMATCH, "task_id", f"set to {task_id!r}, named by the object")
        log.lose("task_id", f"the stored value {_excerpt(stored_id)!r}")
    patched["task_id"] = task_id
    if "status" not in patched:
        label = obj.labels.get(LABEL_STATUS, "")
        status = label if label in {s.value for s in Status} else Status.PENDING.value
        where = "its label" if status == label else "the default: the label does not say"
        log.fix(ProblemCode.MISSING_KEY, "status", f"set to {status!r}, from {where}")
        patched["status"] = status
    raw = patched.get("last_update")
    try:
        parse_timestamp(raw)
    except InvalidInput:
        fallback = last_update_of(obj) or obj.creation_timestamp or now
        text = format_timestamp(fallback)
        if raw is None:
            log.fix(ProblemCode.MISSING_KEY, "last_update", f"set to {text}")
        else:
            log.fix(ProblemCode.BAD_TIMESTAMP, "last_update", f"set to {text}")
            log.lose("last_update", f"the stored value {_excerpt(raw)!r}")
        patched["last_update"] = text
    counter = patched.get("iteration")
    if counter is not None and not re.fullmatch(r"[0-9]{1,18}", counter.strip()):
        log.fix(ProblemCode.BAD_VALUE, "iteration", "unreadable: counted from the records")
        log.lose("iteration", f"the stored value {_excerpt(counter)!r}")
        del patched["iteration"]
    return patched["last_update"]


def _values(patched: dict[str, str], last_update: str, version: int, log: _Log) -> None:
    """Each JSON value: an unreadable one is dropped (and named); entries' timestamps mended."""
    for key in (*_ARRAYS, *_OBJECTS):
        text = patched.get(key)
        if text is None:
            # Version 0 had no iteration_history: migrating makes it up, not a repair.
            optional = key in {KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS}
            if not optional and not (version == 0 and key == "iteration_history"):
                log.fix(ProblemCode.MISSING_KEY, key, "written empty")
            continue
        try:
            value = decode_value(text)
        except MalformedError as m:
            log.fix(m.code, key, f"unreadable ({m.message}): written empty")
            log.lose(key, f"the stored value, {len(text)} characters: {_excerpt(text)!r}")
            del patched[key]
            continue
        shape = list if key in _ARRAYS else dict
        if not isinstance(value, shape):
            log.fix(ProblemCode.BAD_VALUE, key, f"not a JSON {shape.__name__}: written empty")
            log.lose(key, f"the stored value: {_excerpt(text)!r}")
            del patched[key]
            continue
        if isinstance(value, list) and _mend_times(key, value, last_update, log):
            patched[key] = json.dumps(value, ensure_ascii=False)


def _mend_times(key: str, items: list[Any], last_update: str, log: _Log) -> bool:
    """Give entries with a bad (or missing required) timestamp a good one; keep the original."""
    changed = False
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        for name, required in _TIMES[key].items():
            raw = item.get(name)
            if raw is None and not required:
                continue  # absent or null: allowed
            try:
                parse_timestamp(raw)
                continue
            except InvalidInput:
                pass
            path = f"{key}[{i}].{name}"
            if raw is None:
                item[name] = last_update
                log.fix(ProblemCode.MISSING_KEY, path, f"set to last_update {last_update}")
            else:
                item[f"unreadable_{name}"] = raw
                item[name] = last_update if required else None
                log.fix(
                    ProblemCode.BAD_TIMESTAMP,
                    path,
                    f"set to {item[name] or 'none'}; the original is kept as unreadable_{name}",
                )
            changed = True
    return changed


def _left_out(problem: Problem, log: _Log) -> None:
    """An entry (or part of the index) the reader could not read even so: named, left out."""
    match = _ENTRY.match(problem.field)
    if match is not None:
        log.fix(problem.code, problem.field, f"left out: {problem.message}")
        log.lose(f"{match[1]}[{match[2]}]", f"unreadable entry ({problem.message})")
    elif problem.field.startswith(
        (KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS)
    ) and problem.code in {
        ProblemCode.BAD_VALUE,
        ProblemCode.MISSING_KEY,
        ProblemCode.BAD_TIMESTAMP,
    }:
        log.fix(problem.code, problem.field, f"left out: {problem.message}")
        log.lose(problem.field, f"unreadable part ({problem.message})")


def finish(
    prepared: Prepared,
    segments: Mapping[str, StoredObject | None],
    found: Sequence[Problem] = (),
    rebuild: Sequence[StoredObject] = (),
) -> RepairResult:
    """The repaired state, given the segments its index names as read (None: missing).

    A segment not in ``segments`` is taken as it is. The result is validated
    again, encoded as a write would encode it: ``remaining`` lists what is
    still wrong (nothing, unless a problem has no repair). Each problem of
    ``found`` (the validation's) that no step named is fixed by writing the
    state back (an annotation, a key read with its default): it is named too.
    ``rebuild``: the segments ``prepared.rebuild_from`` names, as read, when
    the index could not be read; the index is made again from them.
    """
    state = prepared.state
    if state is None:
        return RepairResult(None, prepared.unsupported, prepared.repairs, prepared.losses)
    log = _Log()
    log.repairs.extend(prepared.repairs)
    log.losses.extend(prepared.losses)
    if rebuild:
        state = rebuild_index(state, rebuild, log.fix)
    state = fix_index(state, segments, log.fix, log.lose)
    state = fix_duplicates(state, log.fix)
    state = fix_counter(state, log.fix, log.lose)
    remaining = _remaining(state)
    for problem in found:
        if repairable(problem) and not _named(problem, log.repairs, remaining):
            log.fix(problem.code, problem.field, f"written back ({problem.message})")
    return RepairResult(state, False, tuple(log.repairs), tuple(log.losses), tuple(remaining))


def _named(problem: Problem, repairs: Sequence[Repair], remaining: Sequence[Problem]) -> bool:
    """Whether a repair (or a remaining problem) already says what became of ``problem``."""
    key = problem.field

    def related(other: str) -> bool:
        return (
            other == key
            or other.startswith((f"{key}[", f"{key}."))
            or key.startswith((f"{other}[", f"{other}."))
        )

    return any(r.kind == problem.code and related(r.key) for r in repairs) or any(
        p.code == problem.code and related(p.field) for p in remaining
    )


def _remaining(state: TaskState) -> list[Problem]:
    """The problems of the head as it would be written (none, when the repair is complete)."""
    try:
        data, labels, annotations = encode_state(state)
    except RemstateError as e:
        return [Problem("data", ProblemCode.BAD_VALUE, f"cannot be written: {e}")]
    obj = StoredObject(
        name=object_name(state.task_id), data=data, labels=labels, annotations=annotations
    )
    return find_problems(obj)
