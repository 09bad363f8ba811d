"""The schema layer: the state model, its ConfigMap layout, names, encodings and sizes.

Pure code: no I/O, and nothing of ours below it but ``remstate.objects`` and
``remstate.errors``. The manager reads and writes through :func:`decode_state`
and :func:`state_object`, and keeps the head small with :func:`plan_compaction`.

Where things are:

- the state's types: ``values`` (limits, kinds, enums, timestamps), ``records``
  (iterations, feedback, errors), ``index`` (the history index, segment
  references, resolutions; its one reader), ``state`` (``TaskState``);
  ``fields`` reads and checks one field; ``frozen`` is the one place that sets
  a field of a frozen dataclass (normalisation, caches: the invariant is there);
- the ConfigMaps: ``layout`` (the data keys, documented), ``encoding`` (state to
  objects), ``decoding`` (objects to state), ``reader`` (strict or collecting),
  ``migrations`` (older schema versions), ``checks`` and ``validation``
  (problems as data); ``datavalue`` (one value: JSON, plain or gzip+base64),
  ``naming``, ``idfilter``, ``compaction`` (what moves to segments).
"""

from __future__ import annotations

from remstate.schema.compaction import (
    FEEDBACK_BUDGET,
    FILTER_BUDGET,
    HEAD_BUDGET,
    KEEP_BYTES,
    RECENT_MOVED_LIMIT,
    RECORD_BUDGETS,
    RESOLUTIONS_LIMIT,
    SEGMENT_BUDGET,
    apply_compaction,
    feedback_bytes,
    needs_filter_page,
    plan_compaction,
    plan_moves,
)
from remstate.schema.datavalue import (
    COMPRESS_OVER,
    GZIP_MARKER,
    MAX_DATA_BYTES,
    MAX_JSON_DEPTH,
    decode_json,
    encode_json,
    value_bytes,
)
from remstate.schema.decoding import (
    decode_filter_page,
    decode_segment,
    decode_state,
    segment_ref,
)
from remstate.schema.encoding import (
    encode_records_segment,
    encode_segment,
    encode_state,
    filter_page_object,
    owner_reference,
    segment_metadata,
    segment_object,
    state_object,
)
from remstate.schema.idfilter import IdFilter
from remstate.schema.index import (
    HistoryIndex,
    Resolutions,
    SegmentRef,
    apply_resolutions,
)
from remstate.schema.layout import (
    DATA_KEYS,
    KEY_FEEDBACK_RESOLUTIONS,
    KEY_HISTORY_INDEX,
    SEGMENT_DATA_KEYS,
    EncodedObject,
    StateTooLarge,
    last_update_of,
    soft_deleted_at,
)
from remstate.schema.migrations import (
    MIGRATED_NOTE,
)
from remstate.schema.naming import (
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SCHEMA_VERSION,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    ANNOTATION_WRITE_ID,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_STATUS,
    LABEL_TASK,
    LIFECYCLE_ACTIVE,
    LIFECYCLE_SOFT_DELETED,
    MANAGED_BY,
    ROLE_SEGMENT,
    ROLE_STATE,
    label_safe,
    label_value,
    managed_selector,
    object_name,
    segment_name,
    task_selector,
    validate_task_id,
)
from remstate.schema.problems import Problem, ProblemCode
from remstate.schema.records import (
    ErrorRecord,
    FeedbackEntry,
    HistorySegment,
    IterationRecord,
    Records,
    record_id,
    validate_record_id,
)
from remstate.schema.state import (
    TaskState,
)
from remstate.schema.validation import (
    find_problems,
    find_segment_problems,
    salvage_state,
)
from remstate.schema.values import (
    KIND_ERRORS,
    KIND_FEEDBACK,
    KIND_ID_FILTERS,
    KIND_ITERATIONS,
    KINDS,
    MAX_AUTHOR_LENGTH,
    MAX_FEEDBACK_ID_LENGTH,
    MAX_TEXT_BYTES,
    SCHEMA_VERSION,
    Clock,
    IssueType,
    Severity,
    Status,
    format_timestamp,
    parse_issue_type,
    parse_severity,
    parse_status,
    parse_timestamp,
    utc_now,
)

__all__ = [
    "ANNOTATION_LAST_UPDATE",
    "ANNOTATION_SCHEMA_VERSION",
    "ANNOTATION_SOFT_DELETED_AT",
    "ANNOTATION_TASK_ID",
    "ANNOTATION_WRITE_ID",
    "COMPRESS_OVER",
    "DATA_KEYS",
    "FEEDBACK_BUDGET",
    "FILTER_BUDGET",
    "GZIP_MARKER",
    "HEAD_BUDGET",
    "KEEP_BYTES",
    "KEY_FEEDBACK_RESOLUTIONS",
    "KEY_HISTORY_INDEX",
    "KINDS",
    "KIND_ERRORS",
    "KIND_FEEDBACK",
    "KIND_ID_FILTERS",
    "KIND_ITERATIONS",
    "LABEL_LIFECYCLE",
    "LABEL_MANAGED_BY",
    "LABEL_ROLE",
    "LABEL_STATUS",
    "LABEL_TASK",
    "LIFECYCLE_ACTIVE",
    "LIFECYCLE_SOFT_DELETED",
    "MANAGED_BY",
    "MAX_AUTHOR_LENGTH",
    "MAX_DATA_BYTES",
    "MAX_FEEDBACK_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_TEXT_BYTES",
    "MIGRATED_NOTE",
    "RECENT_MOVED_LIMIT",
    "RECORD_BUDGETS",
    "RESOLUTIONS_LIMIT",
    "ROLE_SEGMENT",
    "ROLE_STATE",
    "SCHEMA_VERSION",
    "SEGMENT_BUDGET",
    "SEGMENT_DATA_KEYS",
    "Clock",
    "EncodedObject",
    "ErrorRecord",
    "FeedbackEntry",
    "HistoryIndex",
    "HistorySegment",
    "IdFilter",
    "IssueType",
    "IterationRecord",
    "Problem",
    "ProblemCode",
    "Records",
    "Resolutions",
    "SegmentRef",
    "Severity",
    "StateTooLarge",
    "Status",
    "TaskState",
    "apply_compaction",
    "apply_resolutions",
    "decode_filter_page",
    "decode_json",
    "decode_segment",
    "decode_state",
    "encode_json",
    "encode_records_segment",
    "encode_segment",
    "encode_state",
    "feedback_bytes",
    "filter_page_object",
    "find_problems",
    "find_segment_problems",
    "format_timestamp",
    "label_safe",
    "label_value",
    "last_update_of",
    "managed_selector",
    "needs_filter_page",
    "object_name",
    "owner_reference",
    "parse_issue_type",
    "parse_severity",
    "parse_status",
    "parse_timestamp",
    "plan_compaction",
    "plan_moves",
    "record_id",
    "salvage_state",
    "segment_metadata",
    "segment_name",
    "segment_object",
    "segment_ref",
    "soft_deleted_at",
    "state_object",
    "task_selector",
    "utc_now",
    "validate_record_id",
    "validate_task_id",
    "value_bytes",
]
