"""Every compressed value inflates to at most ``MAX_DECODED_BYTES``, read or written.

Readers stop inflating at the bound (a decompression bomb costs the bound,
not what it would inflate to); writers refuse larger documents, and
compaction cuts segments to fit, so whatever remstate writes reads back.
The constants are the real ones: no monkeypatching.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from datetime import timedelta

import pytest

from remstate.errors import CorruptState, InvalidInput
from remstate.schema import (
    MAX_DATA_BYTES,
    FeedbackEntry,
    TaskState,
    apply_compaction,
    decode_json,
    decode_segment,
    plan_compaction,
    segment_object,
    segment_ref,
    value_bytes,
)
from remstate.schema.datavalue import GZIP_MARKER, MAX_DECODED_BYTES, compress_json_text
from tests.helpers import T0


def bomb(inflated: int) -> str:
    """A ``gzip+base64:`` value of ``[{},{},...]``, ``inflated`` bytes once inflated.

    ``inflated`` is 3k + 4 for k ``{}``s after the first. Compressed in
    pieces, so the test never holds the inflated document.
    """
    assert inflated % 3 == 1, "the JSON array has 3k + 4 bytes"
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    count = (inflated - 4) // 3
    piece = b"{}," * 65_536
    parts = [packer.compress(b"[")]
    parts += (packer.compress(piece) for _ in range(count // 65_536))
    parts += [packer.compress(b"{}," * (count % 65_536) + b"{}]"), packer.flush()]
    return GZIP_MARKER + base64.b64encode(b"".join(parts)).decode("ascii")


class TestReaders:
    def test_the_bound_is_a_stated_multiple_of_the_object_limit(self) -> None:
        """16 MiB: 16 times what the API server stores in one object."""
        assert MAX_DECODED_BYTES == 16 * MAX_DATA_BYTES

    @pytest.mark.parametrize("inflated", [MAX_DECODED_BYTES + 3, 2**27 + 2, 2**29 + 2])
    def test_a_bomb_that_fits_in_an_object_is_refused(self, inflated: int) -> None:
        """Just over the bound, the issue's 128 MiB and 512 MiB raise CorruptState."""
        value = bomb(inflated)
        assert len(value) < MAX_DATA_BYTES  # it can be stored
        with pytest.raises(CorruptState, match="expands to more than 16777216 bytes") as caught:
            decode_json(value, field="feedback_history", task_id="42")
        assert caught.value.field == "feedback_history"

    def test_a_value_at_the_bound_is_read(self) -> None:
        """Exactly MAX_DECODED_BYTES inflates and parses."""
        value = bomb(MAX_DECODED_BYTES)
        assert len(decode_json(value, field="metadata")) == (MAX_DECODED_BYTES - 4) // 3 + 1


class TestWriters:
    def test_a_document_over_the_bound_is_refused(self) -> None:
        """What a reader would refuse is never written."""
        with pytest.raises(InvalidInput, match="larger than the 16777216 bytes"):
            compress_json_text("[" + "0," * (MAX_DECODED_BYTES // 2) + "0]")

    def test_a_document_at_the_bound_is_written_and_reads_back(self) -> None:
        """The largest document a writer accepts is one a reader accepts."""
        text = '"' + "x" * (MAX_DECODED_BYTES - 2) + '"'
        packed = compress_json_text(text)
        assert packed.startswith(GZIP_MARKER)
        assert gzip.decompress(base64.b64decode(packed[len(GZIP_MARKER) :])) == text.encode()
        assert decode_json(packed, field="metadata") == text[1:-1]


def lorem(i: int) -> FeedbackEntry:
    """An entry whose JSON compresses about 150 times."""
    return FeedbackEntry.new(
        author="bot",
        severity="low",
        issue_type="style",
        description="lorem ipsum " * 1000,
        id=f"e{i}",
        timestamp=T0 + timedelta(seconds=i),
    )


class TestSegments:
    def test_well_compressed_entries_make_segments_a_reader_inflates(self) -> None:
        """1 MB of segment could hold 150 MB of such entries: it holds at most the bound."""
        # One batch, as append_feedback_many writes it: 20 MiB of JSON in the head.
        entries = tuple(lorem(i) for i in range(1_700))
        state = TaskState("42", 0, "pending", T0, feedback_history=entries)
        segments = []
        while (moved := plan_compaction(state)) is not None:
            obj = segment_object(state, moved)
            assert value_bytes(obj.data or {}) <= MAX_DATA_BYTES
            segments.append(decode_segment(obj))  # reads back: under the bound
            state = apply_compaction(state, segment_ref(obj))
        assert len(segments) >= 2
        kept = [e for s in segments for e in s.entries] + list(state.feedback_history)
        assert [e.id for e in kept] == [e.id for e in entries]
