"""The named checks ``/readyz`` runs: the store's, and those the authorizer and leadership add.

A check is a name and a callable that returns when all is well and raises
(any exception; its message goes in the probe's body) when it is not. Checks
run in the threadpool: they may do blocking I/O, such as a store request or a
SelfSubjectAccessReview.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CheckResult", "ReadinessCheck", "run_checks"]


@dataclass(frozen=True, slots=True)
class ReadinessCheck:
    """One named check: ``probe()`` raises when the service is not ready for it."""

    name: str
    probe: Callable[[], object]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def run_checks(checks: Iterable[ReadinessCheck]) -> list[CheckResult]:
    """Run each check in turn; a failure is recorded with its message, never raised."""
    results = []
    for check in checks:
        try:
            check.probe()
        except Exception as e:  # noqa: BLE001 - any failure makes the replica not ready
            results.append(CheckResult(check.name, False, f"{type(e).__name__}: {e}"))
        else:
            results.append(CheckResult(check.name, True))
    return results
