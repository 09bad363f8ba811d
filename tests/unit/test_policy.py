"""The per-task policy: its validation, its data key and annotations, and reading it back."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from remstate.errors import CorruptState, InvalidInput
from remstate.objects import StoredObject
from remstate.schema import (
    ANNOTATION_MAX_ITERATIONS,
    ANNOTATION_TTL,
    KEY_POLICY,
    MAX_ITERATIONS_LIMIT,
    Policy,
    ProblemCode,
    TaskState,
    decode_state,
    encode_state,
    find_problems,
    state_object,
    ttl_of,
)
from tests.helpers import T0

TWO_WEEKS = timedelta(days=14)


def task(policy: Policy | None = None) -> TaskState:
    return TaskState.new("42", clock=lambda: T0, policy=policy)


def with_data(obj: StoredObject, **changes: str | None) -> StoredObject:
    """The object with data keys changed (``None``: removed)."""
    assert obj.data is not None
    data = {**obj.data, **changes}
    return dataclasses.replace(obj, data={k: v for k, v in data.items() if v is not None})


class TestValidation:
    @pytest.mark.parametrize(
        "fields",
        [
            pytest.param({"max_iterations": 0}, id="limit 0"),
            pytest.param({"max_iterations": -1}, id="negative limit"),
            pytest.param({"max_iterations": MAX_ITERATIONS_LIMIT + 1}, id="limit too high"),
            pytest.param({"max_iterations": True}, id="limit a bool"),
            pytest.param({"max_iterations": 3.0}, id="limit a float"),
            pytest.param({"max_iterations": "3"}, id="limit a string"),
            pytest.param({"ttl": timedelta(0)}, id="ttl zero"),
            pytest.param({"ttl": timedelta(seconds=-5)}, id="negative ttl"),
            pytest.param({"ttl": timedelta(seconds=1.5)}, id="ttl not whole seconds"),
            pytest.param({"ttl": timedelta(days=40_000)}, id="ttl over 100 years"),
            pytest.param({"ttl": 3600}, id="ttl not a timedelta"),
        ],
    )
    def test_the_constructor_refuses(self, fields: dict[str, Any]) -> None:
        """A limit out of 1..MAX_ITERATIONS_LIMIT, or a ttl that is no duration, is InvalidInput."""
        with pytest.raises(InvalidInput):
            Policy(**fields)

    @pytest.mark.parametrize(
        ("ttl", "expected"),
        [
            ("14d", TWO_WEEKS),
            ("36h", timedelta(hours=36)),
            (3600, timedelta(hours=1)),
            (TWO_WEEKS, TWO_WEEKS),
        ],
    )
    def test_of_reads_a_ttl_as_people_write_it(self, ttl: Any, expected: timedelta) -> None:
        """``Policy.of`` takes ``14d``, seconds or a timedelta."""
        assert Policy.of(max_iterations=5, ttl=ttl) == Policy(5, expected)

    @pytest.mark.parametrize("ttl", ["soon", "0", "-1d", 0, True, 1.5])
    def test_of_refuses_a_bad_ttl(self, ttl: Any) -> None:
        """Not a duration, zero, negative, a bool or a fraction of a second: InvalidInput."""
        with pytest.raises(InvalidInput):
            Policy.of(ttl=ttl)

    def test_empty_and_defaults(self) -> None:
        """An empty policy is falsy; ``stored_or`` fills it, and leaves a stored one alone."""
        defaults = Policy(10, TWO_WEEKS)
        assert not Policy()
        assert Policy().stored_or(defaults) == defaults
        assert Policy(3).stored_or(defaults) == Policy(3)  # a stored policy keeps its own ttl
        assert Policy(3).limit(10) == 3
        assert Policy().limit(10) == 10


class TestStored:
    def test_data_key_and_annotations(self) -> None:
        """The head holds ``policy`` as JSON and repeats it in two annotations."""
        encoded = encode_state(task(Policy(10, TWO_WEEKS)))
        assert encoded.data[KEY_POLICY] == '{"max_iterations":10,"ttl_seconds":1209600}'
        assert encoded.annotations[ANNOTATION_TTL] == "1209600"
        assert encoded.annotations[ANNOTATION_MAX_ITERATIONS] == "10"

    def test_an_empty_policy_writes_neither(self) -> None:
        """A state without a policy (written before them) gets no key and no annotation."""
        encoded = encode_state(task())
        assert KEY_POLICY not in encoded.data
        assert ANNOTATION_TTL not in encoded.annotations
        assert ANNOTATION_MAX_ITERATIONS not in encoded.annotations

    def test_no_ttl_no_ttl_annotation(self) -> None:
        """A limit without a ttl: the ttl annotation is absent, so cleanup uses its default."""
        encoded = encode_state(task(Policy(3)))
        assert encoded.data[KEY_POLICY] == '{"max_iterations":3}'
        assert ANNOTATION_TTL not in encoded.annotations
        assert encoded.annotations[ANNOTATION_MAX_ITERATIONS] == "3"

    @pytest.mark.parametrize("policy", [Policy(), Policy(3), Policy(7, TWO_WEEKS)])
    def test_round_trips(self, policy: Policy) -> None:
        """What is written reads back equal, through the object and through to_dict."""
        state = task(policy)
        assert decode_state(state_object(state)).policy == policy
        assert TaskState.from_dict(state.to_dict()).policy == policy

    def test_to_dict_has_both_fields(self) -> None:
        """The JSON form (CLI, HTTP) always has both fields, null when not stored."""
        assert task().to_dict()["policy"] == {"max_iterations": None, "ttl_seconds": None}
        assert task(Policy(3, TWO_WEEKS)).to_dict()["policy"] == {
            "max_iterations": 3,
            "ttl_seconds": 1_209_600,
        }

    def test_a_missing_key_is_an_empty_policy(self) -> None:
        """A head written before policies reads with an empty policy and no problem."""
        obj = with_data(state_object(task(Policy(3))), policy=None)
        obj = dataclasses.replace(
            obj,
            annotations={
                k: v for k, v in obj.annotations.items() if k != ANNOTATION_MAX_ITERATIONS
            },
        )
        assert decode_state(obj).policy == Policy()
        assert find_problems(obj) == []

    def test_keys_of_a_newer_remstate_in_the_policy_are_kept(self) -> None:
        """A field this version does not know stays in ``extra`` and is written back."""
        stored = '{"max_iterations":3,"grace_seconds":60}'
        state = decode_state(with_data(state_object(task(Policy(3))), policy=stored))
        assert state.policy.extra == {"grace_seconds": 60}
        assert encode_state(state).data[KEY_POLICY] == stored


#: Malformed ``policy`` values, and the field each problem names.
MALFORMED = [
    pytest.param("{not json", KEY_POLICY, ProblemCode.MALFORMED_JSON, id="not JSON"),
    pytest.param("gzip+base64:!!!", KEY_POLICY, ProblemCode.BAD_ENCODING, id="broken gzip"),
    pytest.param("null", KEY_POLICY, ProblemCode.BAD_VALUE, id="null"),
    pytest.param("[3]", KEY_POLICY, ProblemCode.BAD_VALUE, id="an array"),
    pytest.param(
        '{"max_iterations":"10"}', "policy.max_iterations", ProblemCode.BAD_VALUE, id="limit text"
    ),
    pytest.param('{"max_iterations":0}', KEY_POLICY, ProblemCode.BAD_VALUE, id="limit 0"),
    pytest.param(
        '{"max_iterations":true}', "policy.max_iterations", ProblemCode.BAD_VALUE, id="bool"
    ),
    pytest.param('{"ttl_seconds":-60}', KEY_POLICY, ProblemCode.BAD_VALUE, id="negative ttl"),
    pytest.param(
        '{"ttl_seconds":1e3}', "policy.ttl_seconds", ProblemCode.BAD_VALUE, id="float ttl"
    ),
    pytest.param(
        '{"ttl_seconds":99999999999999999}', KEY_POLICY, ProblemCode.BAD_VALUE, id="huge ttl"
    ),
]


class TestMalformed:
    @pytest.mark.parametrize(("value", "field", "code"), MALFORMED)
    def test_reported_by_the_validator(self, value: str, field: str, code: ProblemCode) -> None:
        """``find_problems`` names the key and the kind of problem, and does not raise."""
        obj = with_data(state_object(task(Policy(3))), policy=value)
        problems = [p for p in find_problems(obj) if not p.field.startswith("annotations.")]
        assert [(p.field, p.code) for p in problems] == [(field, code)]

    @pytest.mark.parametrize(("value", "field", "code"), MALFORMED)
    def test_refused_by_a_strict_read(self, value: str, field: str, code: ProblemCode) -> None:
        """``decode_state`` raises CorruptState naming the key: no writer guesses a limit."""
        obj = with_data(state_object(task(Policy(3))), policy=value)
        with pytest.raises(CorruptState) as raised:
            decode_state(obj)
        assert raised.value.field == field


class TestAnnotations:
    @pytest.mark.parametrize(
        ("annotation", "value"),
        [
            (ANNOTATION_TTL, None),
            (ANNOTATION_TTL, "60"),
            (ANNOTATION_MAX_ITERATIONS, None),
            (ANNOTATION_MAX_ITERATIONS, "99"),
        ],
    )
    def test_a_policy_annotation_that_disagrees_is_reported(
        self, annotation: str, value: str | None
    ) -> None:
        """Cleanup decides on the annotations: missing or stale, the validator says so."""
        obj = state_object(task(Policy(3, TWO_WEEKS)))
        annotations = {k: v for k, v in obj.annotations.items() if k != annotation}
        if value is not None:
            annotations[annotation] = value
        problems = find_problems(dataclasses.replace(obj, annotations=annotations))
        assert [(p.field, p.code) for p in problems] == [
            (f"annotations.{annotation}", ProblemCode.ANNOTATION_MISMATCH)
        ]
        assert (
            decode_state(dataclasses.replace(obj, annotations=annotations)).policy.max_iterations
            == 3
        )

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("1209600", TWO_WEEKS),
            ("60", timedelta(minutes=1)),
            (None, None),
            ("", None),
            ("0", None),
            ("-60", None),
            ("14d", None),
            ("1.5", None),
            ("٣", None),  # a digit to str.isdigit, not to us
            ("9" * 13, None),
            (str(36_501 * 86_400), None),
        ],
    )
    def test_ttl_of(self, raw: str | None, expected: timedelta | None) -> None:
        """``ttl_of`` reads whole seconds; anything else is None (the cleanup's default)."""
        annotations = {} if raw is None else {ANNOTATION_TTL: raw}
        assert ttl_of(StoredObject(name="task-42-state", annotations=annotations)) == expected


class TestCompatibility:
    """``policy`` is an added key of schema version 1: readers that predate it keep it."""

    def test_a_reader_that_does_not_know_the_key_keeps_it_and_writes_it_back(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The reader as it was before policies (no ``policy`` among its known keys, none read)
        keeps the key in ``extra_data`` and writes it back byte for byte."""
        from remstate.schema import decoding, encoding, layout

        older = layout.KNOWN_KEYS - {KEY_POLICY}
        monkeypatch.setattr(decoding, "KNOWN_KEYS", older)
        monkeypatch.setattr(encoding, "KNOWN_KEYS", older)
        monkeypatch.setattr(decoding, "read_policy", lambda data, reader: Policy())
        obj = state_object(task(Policy(3, TWO_WEEKS)))
        assert obj.data is not None

        state = decode_state(obj)

        assert state.policy == Policy()
        assert state.extra_data == {KEY_POLICY: obj.data[KEY_POLICY]}
        assert encode_state(state).data[KEY_POLICY] == obj.data[KEY_POLICY]

    def test_a_key_of_a_newer_remstate_is_kept_beside_the_policy(self) -> None:
        """Today's handling of unknown keys, which the decision relies on: kept, written back."""
        obj = with_data(state_object(task(Policy(3))), retention_class='{"tier":"gold"}')
        state = decode_state(obj)
        assert state.extra_data == {"retention_class": '{"tier":"gold"}'}
        assert state.policy == Policy(3)
        assert encode_state(state).data["retention_class"] == '{"tier":"gold"}'
