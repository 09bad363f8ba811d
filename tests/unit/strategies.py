"""Hypothesis strategies for the schema's types, shared by the unit tests.

Text is where storage goes wrong, so the strings here are deliberately hard:

- any Unicode character, with the troublemakers over-represented: astral-plane
  characters (emoji, ZWJ sequences, flags, CJK extension B), combining marks
  on their own and stacked, right-to-left scripts and bidi controls, BOM,
  NUL and other controls, JSON's own quote and backslash, U+2028/U+2029;
- empty strings;
- lone surrogates, in the strings that travel inside JSON (the encoder writes
  them as escapes) but not in raw data values, which must be valid UTF-8;
  never a high one right before a low one (see ``LONE_SURROGATES``);
- sometimes very large: 1 KB to 60 KB of UTF-8, either a repeated chunk
  (compresses well) or mostly random hex (compresses poorly), built from a
  seed so that drawing one costs a few bytes of Hypothesis' buffer.

``st.one_of(small, large)`` keeps most draws small, so the runs stay quick.
"""

from __future__ import annotations

import random
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
from remstate.schema.datavalue import utf8_len

#: Property tests stay quick; the machine is noisy, so no deadline.
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: For round trips that may carry 60 KB strings: fewer examples, still no deadline.
ROUND_TRIP = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- text -------------------------------------------------------------------------

#: Characters and sequences that have broken storage layers before.
TRICKY = (
    # astral plane: emoji, skin tone, ZWJ family, flag, music, CJK ext. B, last plane
    "😀",
    "👍🏽",
    "👩\u200d👩\u200d👧\u200d👦",
    "🇯🇵",
    "𝄞",
    "𠜎",
    "\U0010fffd",
    # combining marks: alone, on a base, stacked
    "\u0301",
    "e\u0301",
    "Z\u0351\u0352\u0353\u0354",
    "\u20dd",
    # right to left, and the bidi controls
    "שלום",
    "مرحبا بالعالم",
    "\u200f",
    "\u202e",
    "\u2067",
    "\u061c",
    # invisible and special
    "\u200d",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\x00",
    "\x1f",
    "\x7f",
    "\t",
    "\n",
    "\r",
    '"',
    "\\",
    "</script>",
    "gzip+base64:",
    # case mapping and compatibility oddities
    "İ",
    "ß",
    "ﬃ",
    "漢字",
)
#: Strings a UTF-8 encoder cannot carry; JSON escapes them. A high surrogate is
#: never directly followed by a low one, however they are concatenated: that
#: pair would read back from JSON as one character, and is refused on write.
LONE_SURROGATES = ("\udfff", "\ud800!", "a\udc00b", "\udbff\ud800.")

_any_char = st.characters(exclude_categories=["Cs"])


def unicode_text(*, surrogates: bool = False, min_size: int = 0) -> st.SearchStrategy[str]:
    """Short strings (up to about 40 characters) mixing any characters with the tricky ones."""
    pieces = st.text(_any_char, min_size=1, max_size=5) | st.sampled_from(TRICKY)
    if surrogates:
        pieces |= st.sampled_from(LONE_SURROGATES)
    return st.lists(pieces, min_size=min_size, max_size=8).map("".join)


def _large(chunk: str, size: int, rng: random.Random, incompressible: bool) -> str:
    if incompressible:
        # Random hex, with the chunk every 1000 characters: gzip gains little.
        step = 1000 + utf8_len(chunk)
        return "".join(rng.randbytes(500).hex() + chunk for _ in range(max(1, size // step)))
    return chunk * max(1, size // utf8_len(chunk))


def large_text(*, surrogates: bool = False) -> st.SearchStrategy[str]:
    """1 KB to 60 KB of UTF-8, cheap to draw (see the module's docstring)."""
    return st.builds(
        _large,
        chunk=unicode_text(surrogates=surrogates, min_size=1),
        size=st.integers(1000, 60_000),
        rng=st.randoms(use_true_random=False),
        incompressible=st.booleans(),
    )


def texts(*, surrogates: bool = False) -> st.SearchStrategy[str]:
    """Mostly short tricky strings, empty included; sometimes up to 60 KB."""
    return st.one_of(unicode_text(surrogates=surrogates), large_text(surrogates=surrogates))


#: Strings inside JSON (descriptions, notes, messages, metadata): anything goes.
json_texts = texts(surrogates=True)
#: Short strings inside JSON (authors, IDs, keys).
short_json_texts = unicode_text(surrogates=True)
#: Raw data values (task ID, status, unknown keys) must be valid UTF-8.
data_texts = texts()

# -- JSON values --------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | short_json_texts
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(short_json_texts, children, max_size=4)
    ),
    max_leaves=12,
)
#: JSON values whose strings are sometimes very large (for metadata).
large_json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars | large_text(surrogates=True),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(short_json_texts, children, max_size=3)
    ),
    max_leaves=6,
)
json_objects = st.dictionaries(short_json_texts, large_json_values, max_size=4)

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
        unicode_text(surrogates=True, min_size=1).filter(lambda k: k not in known),
        json_values,
        max_size=3,
    )


# -- the schema's types ---------------------------------------------------------------

statuses = st.sampled_from(list(Status)) | unicode_text()
severities = st.sampled_from(list(Severity)) | unicode_text(surrogates=True)
issue_types = st.sampled_from(list(IssueType)) | unicode_text(surrogates=True)

iteration_records = st.builds(
    IterationRecord,
    iteration=st.integers(0, 1000),
    started_at=aware_datetimes,
    note=json_texts,
    extra=extras(IterationRecord._KEYS),
)
feedback_entries = st.builds(
    FeedbackEntry,
    id=unicode_text(surrogates=True, min_size=1),
    timestamp=aware_datetimes,
    author=short_json_texts,
    severity=severities,
    issue_type=issue_types,
    description=json_texts,
    resolved=st.booleans(),
    resolved_at=st.none() | aware_datetimes,
    extra=extras(FeedbackEntry._KEYS),
)
error_records = st.builds(
    ErrorRecord,
    timestamp=st.none() | aware_datetimes,
    message=json_texts,
    extra=extras(ErrorRecord._KEYS),
)
segment_refs = st.builds(
    SegmentRef,
    n=st.integers(0, 10**6),
    name=short_json_texts,
    first_seq=st.integers(0, 10**9),
    count=st.integers(0, 10**5),
    uid=short_json_texts,
    extra=extras(SegmentRef._KEYS),
)
history_indexes = st.builds(
    HistoryIndex,
    segments=st.lists(segment_refs, max_size=3).map(tuple),
    recent_moved_ids=st.dictionaries(short_json_texts, st.integers(0, 10**6), max_size=5),
)
#: IDs ``FeedbackEntry.validate`` accepts: 1 to 128 printable characters.
valid_feedback_ids = (
    st.lists(
        st.text(
            st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
            min_size=1,
            max_size=5,
        )
        | st.sampled_from([t for t in TRICKY if t.isprintable()])
        | st.just(" "),
        min_size=1,
        max_size=8,
    )
    .map(lambda pieces: "".join(pieces)[:MAX_FEEDBACK_ID_LENGTH])
    .filter(str.isprintable)
)
#: Resolutions of archived entries: ID -> resolved_at, or None for unresolved.
resolution_maps = st.dictionaries(valid_feedback_ids, st.none() | aware_datetimes, max_size=5)

_known_data_keys = frozenset((*DATA_KEYS, KEY_HISTORY_INDEX, KEY_FEEDBACK_RESOLUTIONS))
extra_data = st.dictionaries(
    st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(
        lambda k: k not in _known_data_keys
    ),
    data_texts,
    max_size=2,
)

task_states = st.builds(
    TaskState,
    task_id=unicode_text(min_size=1),
    iteration=st.integers(0, 10**6),
    status=statuses,
    last_update=aware_datetimes,
    iteration_history=st.lists(iteration_records, max_size=3).map(tuple),
    feedback_history=st.lists(feedback_entries, max_size=4).map(tuple),
    history_index=st.just(HistoryIndex()) | history_indexes,
    error_messages=st.lists(error_records, max_size=3).map(tuple),
    metadata=json_objects,
    extra_data=extra_data,
    archived_resolutions=st.just({}) | resolution_maps,
)
