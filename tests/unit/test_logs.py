"""Decision records: one log record per decision, its fields in ``extra``."""

from __future__ import annotations

import logging

import pytest

from remstate.logs import DECISION_FIELDS, log_decision


class TestLogDecision:
    def test_the_fields_are_attributes_of_the_record(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """task, reason, resourceVersion and action are on the LogRecord, for a JSON formatter."""
        logger = logging.getLogger("remstate.cleanup")
        with caplog.at_level(logging.INFO, logger="remstate.cleanup"):
            log_decision(logger, "soft-delete", task="42", reason="expired", resource_version="7")
        [record] = caplog.records
        assert {f: getattr(record, f) for f in DECISION_FIELDS} == {
            "action": "soft-delete",
            "task": "42",
            "reason": "expired",
            "resource_version": "7",
        }
        assert record.levelno == logging.INFO
        assert record.getMessage() == "soft-delete task 42: expired (resourceVersion 7)"

    def test_further_fields_and_a_level(self, caplog: pytest.LogCaptureFixture) -> None:
        """Extra keyword fields are kept; a name a LogRecord uses gets a prefix, not an error."""
        logger = logging.getLogger("remstate.recovery")
        with caplog.at_level(logging.DEBUG, logger="remstate.recovery"):
            log_decision(
                logger,
                "skip",
                task="a/b",
                reason="active",
                level=logging.WARNING,
                name="task-a-b-state",
                kind="segment",
            )
        [record] = caplog.records
        assert record.levelno == logging.WARNING
        assert record.kind == "segment"  # type: ignore[attr-defined]
        assert record.remstate_name == "task-a-b-state"  # type: ignore[attr-defined]
        assert record.name == "remstate.recovery"
        assert record.resource_version is None  # type: ignore[attr-defined]
        assert record.getMessage() == (
            "skip task a/b: active (resourceVersion -) name=task-a-b-state kind=segment"
        )
