"""The ConfigMap layout of a head: its keys, labels and annotations, as written."""

from __future__ import annotations

import base64
import json
import os

import pytest

from remstate.errors import (
    InvalidInput,
)
from remstate.schema import (
    ANNOTATION_ITERATION,
    ANNOTATION_LAST_UPDATE,
    ANNOTATION_SCHEMA_VERSION,
    ANNOTATION_SOFT_DELETED_AT,
    ANNOTATION_TASK_ID,
    DATA_KEYS,
    GZIP_MARKER,
    KEY_HISTORY_INDEX,
    LABEL_LIFECYCLE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_STATUS,
    LABEL_TASK,
    MAX_DATA_BYTES,
    HistoryIndex,
    SegmentRef,
    StateTooLarge,
    decode_state,
    encode_state,
    label_value,
    last_update_of,
    object_name,
    soft_deleted_at,
    state_object,
)
from tests.helpers import T0
from tests.unit.samples import fb, sample_state, stored


class TestLayout:
    def test_data_keys_and_values(self) -> None:
        """The exact data of a small state: scalars verbatim, JSON compact, in order."""
        data = encode_state(sample_state()).data
        assert list(data) == list(DATA_KEYS)
        assert data["schema_version"] == "1"
        assert data["task_id"] == "42"
        assert data["iteration"] == "2"
        assert data["status"] == "in_progress"
        assert data["last_update"] == "2024-05-01T12:00:00Z"
        assert data["iteration_history"] == (
            '[{"iteration":1,"started_at":"2024-05-01T12:00:00Z"},'
            '{"iteration":2,"started_at":"2024-05-01T12:00:00Z","note":"second"}]'
        )
        assert json.loads(data["feedback_history"])[1] == {
            "id": "e1",
            "timestamp": "2024-05-01T12:00:01Z",
            "author": "alice",
            "severity": "high",
            "issue_type": "bug",
            "description": "feedback 1",
            "resolved": True,
            "resolved_at": "2024-05-01T12:00:00Z",
        }
        assert data["error_messages"] == '[{"timestamp":"2024-05-01T12:00:00Z","message":"boom"}]'
        assert data["metadata"] == '{"repo":"org/repo","pr":5}'

    def test_labels_and_annotations(self) -> None:
        """Labels for selection; annotations for metadata-only scans."""
        _, labels, annotations = encode_state(sample_state(task_id="Org/Repo#5"))
        assert labels == {
            LABEL_MANAGED_BY: "remstate",
            LABEL_TASK: label_value("Org/Repo#5"),
            LABEL_STATUS: "in_progress",
            LABEL_LIFECYCLE: "active",
            LABEL_ROLE: "state",
        }
        assert annotations == {
            ANNOTATION_TASK_ID: "Org/Repo#5",
            ANNOTATION_LAST_UPDATE: "2024-05-01T12:00:00Z",
            ANNOTATION_SCHEMA_VERSION: "1",
            ANNOTATION_ITERATION: str(sample_state().iteration),
        }

    def test_unknown_status_label_is_sanitised(self) -> None:
        """A status from a newer version still gives a valid label value."""
        _, labels, _ = encode_state(sample_state(status="Waiting on CI!"))
        assert labels[LABEL_STATUS].startswith("waiting-on-ci--")

    def test_soft_deleted(self) -> None:
        """Soft deletion is a lifecycle label plus a time annotation."""
        obj = stored(sample_state(), soft_deleted_at=T0)
        assert obj.labels[LABEL_LIFECYCLE] == "soft-deleted"
        assert obj.annotations[ANNOTATION_SOFT_DELETED_AT] == "2024-05-01T12:00:00Z"
        assert soft_deleted_at(obj) == T0
        assert soft_deleted_at(stored(sample_state())) is None
        assert last_update_of(obj) == T0

    def test_history_index_only_with_segments(self) -> None:
        """``history_index`` appears only once history has moved to segments."""
        assert KEY_HISTORY_INDEX not in encode_state(sample_state()).data
        history = HistoryIndex((SegmentRef(1, "task-42-state-h1", 0, 2, "u"),), {"a": 1, "b": 1})
        data = encode_state(sample_state(history_index=history)).data
        assert json.loads(data[KEY_HISTORY_INDEX]) == {
            "segments": [
                {"n": 1, "name": "task-42-state-h1", "first_seq": 0, "count": 2, "uid": "u"}
            ],
            "recent_moved": {"1": ["a", "b"]},
        }

    def test_large_fields_are_compressed(self) -> None:
        """Large JSON values carry the gzip marker; small ones stay plain."""
        state = sample_state(feedback_history=tuple(fb(i) for i in range(500)))
        data = encode_state(state).data
        assert data["feedback_history"].startswith(GZIP_MARKER)
        assert data["metadata"].startswith("{")
        assert decode_state(stored(state)) == state

    def test_state_object(self) -> None:
        """``state_object`` names the object and carries the resourceVersion."""
        obj = state_object(sample_state(task_id="A/B"), resource_version="17")
        assert obj.name == object_name("A/B")
        assert obj.resource_version == "17"

    def test_too_large_raises_state_too_large(self) -> None:
        """What cannot fit under 1 MiB is refused before the store sees it."""
        metadata = {"blob": base64.b64encode(os.urandom(900_000)).decode()}
        with pytest.raises(StateTooLarge) as info:
            encode_state(sample_state(metadata=metadata))
        assert info.value.size > MAX_DATA_BYTES
        assert isinstance(info.value, InvalidInput)

    def test_extra_data_may_not_use_known_keys(self) -> None:
        """Unknown data keys cannot overwrite ours."""
        with pytest.raises(InvalidInput):
            encode_state(sample_state(extra_data={"status": "x"}))
