"""The history index: where the records that left the head went.

The head carries a :class:`HistoryIndex` (its segments, as :class:`SegmentRef`,
and the IDs moved last) and the :class:`Resolutions` of archived feedback.

Resolutions of archived feedback: segments hold feedback that left the head.
Resolving (or un-resolving) such an entry is recorded in the head, in
``TaskState.archived_resolutions`` (entry ID -> resolved_at, ``None`` for
"marked unresolved"), which readers lay over the segment's entries with
:func:`apply_resolutions`. Segments are never rewritten, so a reader may cache
a segment's content by ``(name, uid)``; the head refuses a resolution past
:data:`RESOLUTIONS_LIMIT`.

Pure code, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from remstate.errors import InvalidInput
from remstate.schema.datavalue import compress_json_text, dumps
from remstate.schema.fields import (
    _array,
    _check_extra,
    _check_feedback_id,
    _check_type,
    _construct,
    _extra,
    _get,
    _int,
    _kind,
    _object,
    _path,
    _public,
    _str,
    _tuple_of,
)
from remstate.schema.frozen import (
    cache_field,
    remember,
    set_normalized,
)
from remstate.schema.idfilter import IdFilter
from remstate.schema.problems import MalformedError, ProblemCode
from remstate.schema.records import (
    FeedbackEntry,
)
from remstate.schema.values import (
    KIND_FEEDBACK,
    SEGMENT_NUMBER,
    _utc,
    format_timestamp,
    parse_timestamp,
)

__all__ = [
    "HistoryIndex",
    "Resolutions",
    "SegmentRef",
    "apply_resolutions",
    "read_history_index",
    "read_resolution",
]

_T = TypeVar("_T")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A history segment: an immutable ConfigMap holding records of one ``kind``.

    It holds the records of its kind (feedback entries, iteration records or
    error records) with sequence numbers ``first_seq`` to
    ``first_seq + count - 1`` (sequence numbers count each kind's records from
    0, oldest first). It is never rewritten: a reader may cache its content by
    ``(name, uid)``. (Older remstates wrote a ``rev`` key here; it is kept as an
    unknown key.)
    ``id_filter`` holds the IDs of its records (feedback IDs, increment keys,
    error IDs); ``None`` (an index written before filters) means "maybe any ID".
    """

    n: int
    name: str
    first_seq: int
    count: int
    uid: str
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: What the segment holds: feedback (the default, and all older indexes knew).
    kind: str = KIND_FEEDBACK
    #: A Bloom filter of the IDs it holds; ``None``: unknown, read the segment.
    #: Derived from the segment's content, so not part of equality.
    id_filter: IdFilter | None = field(default=None, compare=False)

    # "ids" is not among them: a filter in a form we do not know stays in extra.
    _KEYS = frozenset({"n", "name", "first_seq", "count", "uid", "kind"})

    def __post_init__(self) -> None:
        for name in ("n", "first_seq", "count"):
            _check_type(getattr(self, name), int, f"segment {name}")
            if getattr(self, name) < 0:
                raise InvalidInput(f"segment {name} must not be negative")
        _check_type(self.name, str, "segment name")
        _check_type(self.uid, str, "segment uid")
        _check_type(self.kind, str, "segment kind")
        set_normalized(self, "extra", _check_extra(self.extra, self._KEYS, "segment reference"))
        if self.id_filter is not None:
            _check_type(self.id_filter, IdFilter, "segment id_filter")
            if "ids" in self.extra:
                raise InvalidInput("a segment reference has one ID filter, not two")

    @property
    def end_seq(self) -> int:
        """One past the last sequence number held."""
        return self.first_seq + self.count

    @property
    def cache_key(self) -> tuple[str, str]:
        """``(name, uid)``: the same key means the same content (segments are immutable)."""
        return (self.name, self.uid)

    def to_dict(self) -> dict[str, Any]:
        """The index's form; ``kind`` only when not feedback, so that older indexes
        read back unchanged."""
        out: dict[str, Any] = {
            "n": self.n,
            "name": self.name,
            "first_seq": self.first_seq,
            "count": self.count,
            "uid": self.uid,
        }
        if self.kind != KIND_FEEDBACK:
            out["kind"] = self.kind
        if self.id_filter is not None:
            out["ids"] = self.id_filter.to_dict()
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentRef:
        """Read the form :meth:`to_dict` writes.

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: cls._read(data, "segments"))

    @classmethod
    def _read(cls, value: object, path: str) -> SegmentRef:
        obj = _object(value, path)
        n = _int(_get(obj, "n", path), _path(path, "n"))
        name = _str(_get(obj, "name", path), _path(path, "name"))
        first_seq = _int(_get(obj, "first_seq", path), _path(path, "first_seq"))
        count = _int(_get(obj, "count", path), _path(path, "count"))
        uid = _str(obj.get("uid", ""), _path(path, "uid"))
        kind = _str(obj.get("kind", KIND_FEEDBACK), _path(path, "kind"))
        extra = _extra(obj, cls._KEYS)
        id_filter = IdFilter.from_stored(extra.get("ids"))
        if id_filter is not None:
            del extra["ids"]
        return _construct(
            path,
            lambda: cls(n, name, first_seq, count, uid, extra, kind=kind, id_filter=id_filter),
        )


@dataclass(frozen=True, slots=True)
class HistoryIndex:
    """Where the history that left the head went: its segments, and the IDs moved last.

    It changes only when a segment is added, so it is a value of its own that
    an append carries over untouched, with its encoding computed once.
    """

    segments: tuple[SegmentRef, ...] = ()
    #: IDs most recently moved from the head into segments, oldest first, mapped
    #: to their segment number: a retried append is recognised at constant cost.
    recent_moved_ids: Mapping[str, int] = field(default_factory=dict)
    #: Keys written by a newer remstate, kept and written back as they were.
    extra: Mapping[str, Any] = field(default_factory=dict)
    _encoded: tuple[int, str] | None = cache_field()
    # Each kind's segments, computed once: every lookup and total asks for them.
    _by_kind: dict[str, tuple[SegmentRef, ...]] | None = cache_field()  # noqa: RUF009 -- a field(), not a shared default

    _KEYS = frozenset({"segments", "recent_moved"})

    def __post_init__(self) -> None:
        set_normalized(self, "segments", _tuple_of(self.segments, SegmentRef, "segments"))
        moved = dict(self.recent_moved_ids)
        for entry_id, n in moved.items():
            _check_type(entry_id, str, "recent_moved_ids key")
            _check_type(n, int, "recent_moved_ids value")
        set_normalized(self, "recent_moved_ids", moved)
        set_normalized(self, "extra", _check_extra(self.extra, self._KEYS, "history index"))

    def __bool__(self) -> bool:
        return bool(self.segments or self.recent_moved_ids or self.extra)

    def segments_of(self, kind: str) -> tuple[SegmentRef, ...]:
        """The segments holding records of ``kind``, oldest first."""
        if self._by_kind is None:
            by_kind: dict[str, list[SegmentRef]] = {}
            for segment in self.segments:
                by_kind.setdefault(segment.kind, []).append(segment)
            remember(self, "_by_kind", {k: tuple(v) for k, v in by_kind.items()})
        assert self._by_kind is not None
        return self._by_kind.get(kind, ())

    def to_dict(self) -> dict[str, Any]:
        """The ``history_index`` document: IDs are grouped by segment, for compactness."""
        grouped: dict[str, list[str]] = {}
        for entry_id, n in self.recent_moved_ids.items():
            grouped.setdefault(str(n), []).append(entry_id)
        out = {"segments": [s.to_dict() for s in self.segments], "recent_moved": grouped}
        out.update(self.extra)
        return out

    def encoded(self, compress_over: int) -> str:
        """The ConfigMap value of :meth:`to_dict`, computed once per index."""
        if self._encoded is None or self._encoded[0] != compress_over:
            text = compress_json_text(dumps(self.to_dict()), compress_over=compress_over)
            remember(self, "_encoded", (compress_over, text))
        assert self._encoded is not None
        return self._encoded[1]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryIndex:
        """Read the form :meth:`to_dict` writes (the ``history_index`` document).

        Raises:
            CorruptState: a field is missing or of the wrong type.
        """
        return _public(lambda: read_history_index(data, _raise))


def _raise(m: MalformedError) -> None:
    raise m


def read_history_index(
    value: object, report: Callable[[MalformedError], None], path: str = "history_index"
) -> HistoryIndex:
    """The one reader of a stored ``history_index`` document.

    ``report`` is given each part that cannot be read: a strict reader raises
    it, a collecting one records it, and that part is left out (a segment
    reference, a group of moved IDs, one ID), so a validator sees every
    problem and the rest of the index still reads.
    """
    # Radon grade C: one try per part of the index, so each part is reported
    # and left out on its own.
    try:
        obj = _object(value, path)
    except MalformedError as m:
        report(m)
        return HistoryIndex()
    seg_path = _path(path, "segments")
    segments: list[SegmentRef] = []
    for i, item in enumerate(_part(obj.get("segments", []), seg_path, _array, report) or ()):
        try:
            segments.append(SegmentRef._read(item, _path(seg_path, i)))
        except MalformedError as m:
            report(m)
        except RecursionError:
            report(MalformedError(ProblemCode.BAD_VALUE, _path(seg_path, i), "nested too deeply"))
    moved_path = _path(path, "recent_moved")
    moved: dict[str, int] = {}
    for n, ids in (_part(obj.get("recent_moved", {}), moved_path, _object, report) or {}).items():
        group = _path(moved_path, n[:40])
        if not SEGMENT_NUMBER.fullmatch(n):
            report(MalformedError(ProblemCode.BAD_VALUE, group, "not a segment number"))
            continue
        for i, entry_id in enumerate(_part(ids, group, _array, report) or ()):
            try:
                moved[_str(entry_id, _path(group, i))] = int(n)
            except MalformedError as m:
                report(m)
    extra = _extra(obj, HistoryIndex._KEYS)
    return _construct(path, lambda: HistoryIndex(tuple(segments), moved, extra))


def _part(
    value: object,
    path: str,
    read: Callable[[object, str], _V],
    report: Callable[[MalformedError], None],
) -> _V | None:
    try:
        return read(value, path)
    except MalformedError as m:
        report(m)
        return None


class Resolutions(Mapping[str, datetime | None]):
    """Resolutions of archived feedback: entry ID -> resolved_at, ``None`` for unresolved.

    An immutable mapping, validated on construction (IDs are valid feedback
    IDs, times are aware and kept in UTC). It equals any mapping with the same
    items. Its encoding is computed once: the head carries it over from write
    to write, and re-encoding a full one costs more than an append.
    """

    __slots__ = ("_encoded", "_items")

    def __init__(
        self, items: Mapping[str, datetime | None] | Iterable[tuple[str, datetime | None]] = ()
    ) -> None:
        """Raises: InvalidInput: an ID that is not a valid feedback ID, or a bad time."""
        pairs = items.items() if isinstance(items, Mapping) else items
        out: dict[str, datetime | None] = {}
        for entry_id, resolved_at in pairs:
            _check_feedback_id(entry_id, "archived resolution id")
            out[entry_id] = None if resolved_at is None else _utc(resolved_at, "resolved_at")
        self._items = out
        self._encoded: tuple[int, str] | None = None

    @classmethod
    def of(cls, items: Mapping[str, datetime | None]) -> Resolutions:
        """``items`` itself if it is a :class:`Resolutions`, else a validated copy."""
        return items if isinstance(items, Resolutions) else cls(items)

    def __getitem__(self, entry_id: str) -> datetime | None:
        return self._items[entry_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._items

    def __repr__(self) -> str:
        return f"Resolutions({self._items!r})"

    def to_dict(self) -> dict[str, str | None]:
        """The stored form: ID -> RFC 3339 time, or null."""
        return {k: None if v is None else format_timestamp(v) for k, v in self._items.items()}

    def encoded(self, compress_over: int) -> str:
        """The ConfigMap value of :meth:`to_dict`, computed once per mapping."""
        if self._encoded is None or self._encoded[0] != compress_over:
            text = compress_json_text(dumps(self.to_dict()), compress_over=compress_over)
            self._encoded = (compress_over, text)
        return self._encoded[1]


def read_resolution(entry_id: object, value: object, path: str) -> tuple[str, datetime | None]:
    """Internal: one stored resolution (ID, RFC 3339 or null); raises ``MalformedError``."""
    try:
        _check_feedback_id(entry_id, "archived resolution id")
    except InvalidInput as e:
        raise MalformedError(ProblemCode.BAD_VALUE, path, str(e)) from None
    assert isinstance(entry_id, str)
    if value is None:
        return entry_id, None
    if not isinstance(value, str):
        raise MalformedError(
            ProblemCode.BAD_VALUE,
            path,
            f"resolution of {entry_id!r} must be a timestamp or null, not {_kind(value)}",
        )
    try:
        return entry_id, parse_timestamp(value)
    except InvalidInput as e:
        raise MalformedError(
            ProblemCode.BAD_TIMESTAMP, path, f"resolution of {entry_id!r}: {e}"
        ) from None


def apply_resolutions(
    entries: Sequence[FeedbackEntry], resolutions: Mapping[str, datetime | None]
) -> tuple[FeedbackEntry, ...]:
    """``entries`` with the resolutions laid over them.

    An entry whose ID is in ``resolutions`` gets ``resolved`` and
    ``resolved_at`` from it (``None``: unresolved, no time); every other
    entry, and every entry that already agrees, is the very same object.
    """
    if not resolutions:
        return tuple(entries)
    return tuple(_resolved(entry, resolutions) for entry in entries)


def _resolved(entry: FeedbackEntry, resolutions: Mapping[str, datetime | None]) -> FeedbackEntry:
    if entry.id not in resolutions:
        return entry
    resolved_at = resolutions[entry.id]
    resolved = resolved_at is not None
    if entry.resolved == resolved and entry.resolved_at == resolved_at:
        return entry
    return dataclasses.replace(entry, resolved=resolved, resolved_at=resolved_at)
