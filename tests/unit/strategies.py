"""Hypothesis strategies for the schema's types, shared by the unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from remstate.schema import (
    DATA_KEYS,
    KEY_FEEDBACK_RESOLUTIONS,
    KEY_HISTORY_INDEX,
    MAX_FEEDBACK_ID_LENGTH,
    ErrorRecord,
    FeedbackEntry,
    HistoryIndex,
    IssueType,
    IterationRecord,
    SegmentRef,
    Severity,
    Status,
    TaskState,
)

#: Property tests stay quick; the machine is noisy, so no deadline.
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=4)

_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
#: Aware datetimes of any zone, far enough from the ends that UTC holds them.
aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones
)


def extras(known: frozenset[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Unknown keys, as a newer remstate might write them."""
    return st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k not in known), json_values, max_size=3
    )


statuses = st.sampled_from(list(Status)) | st.text(max_size=30)
severities = st.sampled_from(list(Severity)) | st.text(max_size=20)
issue_types = st.sampled_from(list(IssueType)) | st.text(max_size=20)

iteration_records = st.builds(
    IterationRecord,
    iteration=st.integers(0, 1000),
    started_at=aware_datetimes,
    note=st.text(max_size=40),
    extra=extras(IterationRecord._KEYS),
)
feedback_entries = st.builds(
    FeedbackEntry,
    id=st.text(min_size=1, max_size=30),
    timestamp=aware_datetimes,
    author=st.text(max_size=30),
    severity=severities,
    issue_type=issue_types,
    description=st.text(max_size=200),
    resolved=st.booleans(),
    resolved_at=st.none() | aware_datetimes,
    extra=extras(FeedbackEntry._KEYS),
)
error_records = st.builds(
    ErrorRecord,
    timestamp=st.none() | aware_datetimes,
    message=st.text(max_size=80),
    extra=extras(ErrorRecord._KEYS),
)
segment_refs = st.builds(
    SegmentRef,
    n=st.integers(0, 10**6),
    name=st.text(max_size=40),
    first_seq=st.integers(0, 10**9),
    count=st.integers(0, 10**5),
    uid=st.text(max_size=36),
    rev=st.just(0) | st.integers(0, 10**6),
    extra=extras(SegmentRef._KEYS),
)
history_indexes = st.builds(
    HistoryIndex,
    segments=st.lists(segment_refs, max_size=3).map(tuple),
    recent_moved_ids=st.dictionaries(st.text(max_size=26), st.integers(0, 10**6), max_size=5),
)
#: IDs ``FeedbackEntry.validate`` accepts: 1 to 128 printable characters.
valid_feedback_ids = st.text(
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
    | st.just(" "),
    min_size=1,
    max_size=MAX_FEEDBACK_ID_LENGTH,
).filter(str.isprintable)
#: Resolutions of archived entries: ID -> resolved_at, or None for unresolved.
resolution_maps = st.dictionaries(valid_feedback_ids, st.none() | aware_datetimes, max_size=5)

_known_data_keys = frozenset((*DATA_KEYS, KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS))
extra_data = st.dictionaries(
    st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(
        lambda k: k not in _known_data_keys
    ),
    st.text(max_size=40),
    max_size=2,
)

task_states = st.builds(
    TaskState,
    task_id=st.text(min_size=1, max_size=60),
    iteration=st.integers(0, 10**6),
    status=statuses,
    last_update=aware_datetimes,
    iteration_history=st.lists(iteration_records, max_size=3).map(tuple),
    feedback_history=st.lists(feedback_entries, max_size=4).map(tuple),
    history=st.just(HistoryIndex()) | history_indexes,
    error_messages=st.lists(error_records, max_size=3).map(tuple),
    metadata=json_objects,
    extra_data=extra_data,
    archived_resolutions=st.just({}) | resolution_maps,
)
