"""Object names and label values: valid for the API server, deterministic, collision-free."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remstate.errors import InvalidInput
from remstate.schema import (
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_STATUS,
    LABEL_TASK,
    label_safe,
    label_value,
    managed_selector,
    object_name,
    segment_name,
    task_selector,
    validate_task_id,
)
from remstate.schema.naming import MAX_SEGMENT_NUMBER, format_ranges, parse_ranges, snapshot_name
from tests.unit.strategies import FAST

DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

#: Task IDs as callers really write them.
valid_task_ids = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=300
) | st.from_regex(r"[a-z0-9][a-z0-9-]{0,60}[a-z0-9]", fullmatch=True)


def assert_valid_name(name: str) -> None:
    assert len(name) <= 253, name
    assert DNS1123_SUBDOMAIN.fullmatch(name), name


def assert_valid_label(value: str) -> None:
    assert len(value) <= 63, value
    assert LABEL_VALUE.fullmatch(value), value


class TestObjectName:
    @pytest.mark.parametrize(
        ("task_id", "name"),
        [
            ("42", "task-42-state"),
            ("fix-login-bug", "task-fix-login-bug-state"),
            ("a", "task-a-state"),
            ("0-9", "task-0-9-state"),
        ],
    )
    def test_valid_id_is_used_as_it_is(self, task_id: str, name: str) -> None:
        """An ID that is already a valid name part is kept verbatim."""
        assert object_name(task_id) == name

    @pytest.mark.parametrize(
        ("task_id", "slug"),
        [
            ("PROJ-17", "proj-17"),
            ("org/repo#5", "org-repo-5"),
            ("snake_case_id", "snake-case-id"),
            ("with spaces  here", "with-spaces-here"),
            ("café-42", "caf-42"),
            ("-leading", "leading"),
            ("trailing-", "trailing"),
            ("double--dash", "double-dash"),
            ("修复登录", "x"),
            ("///", "x"),
            ("a" * 300, "a" * 40),
        ],
    )
    def test_invalid_id_is_mapped_to_slug_and_hash(self, task_id: str, slug: str) -> None:
        """Other IDs become ``{slug}--{12-char hash}``, ``x`` standing for an empty slug."""
        name = object_name(task_id)
        assert re.fullmatch(rf"task-{re.escape(slug)}--[a-z2-7]{{12}}-state", name), name
        assert_valid_name(name)

    def test_mapping_is_deterministic(self) -> None:
        """The same ID always gives the same name."""
        assert object_name("Org/Repo#5") == object_name("Org/Repo#5")

    def test_case_matters(self) -> None:
        """IDs differing only in case get different names."""
        assert object_name("abc") != object_name("ABC") != object_name("Abc")

    def test_as_is_id_cannot_take_a_mapped_name(self) -> None:
        """An ID shaped like a mapped name part holds ``--``, so it is mapped in turn."""
        mapped = object_name("ABC")[len("task-") : -len("-state")]
        assert "--" in mapped
        assert object_name(mapped) != object_name("ABC")

    def test_longest_as_is_id_leaves_room_for_segments(self) -> None:
        """An ID is kept verbatim only while its largest segment name stays valid."""
        longest = "a" * 234
        assert object_name(longest) == f"task-{longest}-state"
        assert_valid_name(segment_name(longest, MAX_SEGMENT_NUMBER))
        assert "--" in object_name("a" * 235)

    @pytest.mark.parametrize(
        "task_id",
        ["", "a\nb", "tab\there", "nul\x00", "del\x7f", "x" * 1025, "lone\ud800surrogate"],
    )
    def test_unacceptable_ids_raise_invalid_input(self, task_id: str) -> None:
        """Empty, too long, control characters or invalid Unicode: InvalidInput."""
        with pytest.raises(InvalidInput):
            object_name(task_id)
        with pytest.raises(InvalidInput):
            label_value(task_id)

    def test_non_string_raises_invalid_input(self) -> None:
        """A task ID must be a string."""
        with pytest.raises(InvalidInput):
            validate_task_id(42)  # type: ignore[arg-type]

    def test_longest_acceptable_id(self) -> None:
        """1024 characters are accepted, and mapped to a short name."""
        name = object_name("Z" * 1024)
        assert_valid_name(name)
        assert len(name) < 80

    @FAST
    @given(task_id=valid_task_ids)
    def test_every_name_is_a_valid_subdomain(self, task_id: str) -> None:
        """Names of state and segments are DNS-1123 subdomains of at most 253 characters."""
        assert_valid_name(object_name(task_id))
        assert_valid_name(segment_name(task_id, 0))
        assert_valid_name(segment_name(task_id, MAX_SEGMENT_NUMBER))

    @FAST
    @given(task_ids=st.sets(valid_task_ids, min_size=2, max_size=50))
    def test_distinct_ids_get_distinct_names(self, task_ids: set[str]) -> None:
        """No two distinct IDs share a name or a label value."""
        assert len({object_name(t) for t in task_ids}) == len(task_ids)
        assert len({label_value(t) for t in task_ids}) == len(task_ids)

    def test_distinct_over_many_similar_ids(self) -> None:
        """IDs that slugify alike (case, punctuation) still get distinct names."""
        ids = [
            f"{p}{i}" for i in range(2000) for p in ("Task_", "task_", "TASK-", "task ", "task/")
        ]
        assert len({object_name(t) for t in ids}) == len(ids)


class TestSegmentName:
    def test_segment_name_extends_the_state_name(self) -> None:
        """Segment ``n`` of task 42 is ``task-42-state-h{n}``."""
        assert segment_name("42", 1) == "task-42-state-h1"
        assert segment_name("PROJ-1", 7).startswith(object_name("PROJ-1") + "-h")

    @pytest.mark.parametrize("n", [-1, MAX_SEGMENT_NUMBER + 1, True, 1.0, "1"])
    def test_bad_segment_number_raises(self, n: object) -> None:
        """Numbers outside 0..999999, or not ints, raise InvalidInput."""
        with pytest.raises(InvalidInput):
            segment_name("42", n)  # type: ignore[arg-type]


class TestLabelValue:
    @pytest.mark.parametrize("task_id", ["42", "PROJ-17", "a_b.c", "A"])
    def test_valid_label_is_used_as_it_is(self, task_id: str) -> None:
        """An ID that is a valid label value (upper case and ``_`` allowed) is kept."""
        assert label_value(task_id) == task_id

    @pytest.mark.parametrize("task_id", ["org/repo#5", "x" * 64, "-a", "a--b", "é", "a b"])
    def test_invalid_label_is_mapped(self, task_id: str) -> None:
        """Other IDs are mapped as names are: ``{slug}--{hash}``."""
        value = label_value(task_id)
        assert "--" in value
        assert_valid_label(value)

    @FAST
    @given(task_id=valid_task_ids)
    def test_every_label_value_is_valid(self, task_id: str) -> None:
        """Label values are at most 63 characters of the allowed alphabet."""
        assert_valid_label(label_value(task_id))

    @FAST
    @given(value=st.text(max_size=100))
    def test_label_safe_accepts_anything(self, value: str) -> None:
        """Any stored string (an unknown status, say) gets a valid label value."""
        assert_valid_label(label_safe(value))

    def test_label_safe_keeps_empty(self) -> None:
        """The empty string stays empty: labels allow it."""
        assert label_safe("") == ""


class TestSelectors:
    def test_task_selector(self) -> None:
        """Selects remstate's objects of one task, optionally of one role."""
        assert task_selector("A/B") == (
            f"{LABEL_MANAGED_BY}=remstate,{LABEL_TASK}={label_value('A/B')}"
        )
        assert task_selector("42", role="state").endswith(f",{LABEL_ROLE}=state")

    def test_managed_selector(self) -> None:
        """Selects remstate's objects, narrowed by role, lifecycle and status."""
        assert managed_selector() == f"{LABEL_MANAGED_BY}=remstate"
        sel = managed_selector(role="state", lifecycle="active", status="in_progress")
        assert sel.split(",")[1:] == [
            f"{LABEL_ROLE}=state",
            "remstate.io/lifecycle=active",
            f"{LABEL_STATUS}=in_progress",
        ]


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        (set(), ""),
        ({0}, "0"),
        ({0, 1, 2, 5}, "0-2,5"),
        ({1, 3, 5}, "1,3,5"),
        ({7, 8, 9, 10, 999_999}, "7-10,999999"),
    ],
)
def test_segment_ranges_round_trip(numbers: set[int], text: str) -> None:
    assert format_ranges(numbers) == text
    assert parse_ranges(text) == numbers


@pytest.mark.parametrize("text", ["a", "1-", "-1", "3-1", "1,,2", "1000000", "1 ,2", "0-1000000"])
def test_bad_segment_ranges_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ranges(text)


def test_snapshot_names_follow_the_head() -> None:
    assert snapshot_name("42", 3) == "task-42-state-s3"
    with pytest.raises(InvalidInput):
        snapshot_name("42", -1)
