"""The API's request bodies: Pydantic models, strict and closed.

Design constraint: a body is refused as a whole (422, problem+json) before
the manager is called when it has a wrong type, a missing field or an unknown
one, so nothing is written. Types are strict (no ``"3"`` for 3, no 1 for
true), as the library's own arguments are. Limits the library checks itself
(lengths, id characters, JSON metadata) stay there and give 400: one rule, one
place. Responses are the library's own ``to_dict`` forms, documented by the
response models below.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from remstate.schema import IssueType, Severity, Status

__all__ = [
    "Cleanup",
    "ErrorIn",
    "FeedbackIn",
    "Increment",
    "IncrementOut",
    "MetadataPatch",
    "PolicyPatch",
    "Resolution",
    "StatusIn",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Strict mode wants an enum instance; the API takes the enum's value.
_Lax = Field(strict=False)


class Increment(_Body):
    """Add one iteration. ``op_id`` makes it idempotent: the same key, the same iteration."""

    note: str = ""
    op_id: str | None = None


class IncrementOut(BaseModel):
    task_id: str
    iteration: int
    op_id: str


class FeedbackIn(_Body):
    """A feedback entry; ``id`` makes the append idempotent (a ULID when none is given)."""

    author: str
    severity: Annotated[Severity, _Lax]
    issue_type: Annotated[IssueType, _Lax]
    description: str
    id: str | None = None


class Resolution(_Body):
    resolved: bool = True


class StatusIn(_Body):
    status: Annotated[Status, _Lax]


class ErrorIn(_Body):
    """An error message; ``id`` makes the record idempotent."""

    message: str
    id: str | None = None


class MetadataPatch(_Body):
    """Keys to set (JSON values) and keys to drop."""

    set: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class PolicyPatch(_Body):
    """What to change of the stored policy; what is not given stays as it is."""

    max_iterations: int | None = None
    ttl: str | None = Field(default=None, description="a duration: 14d, 36h, 90m, or seconds")
    clear_ttl: bool = False


class Cleanup(_Body):
    """A manual cleanup run (the periodic one uses the server's defaults)."""

    dry_run: bool = False
    ttl: str | None = Field(default=None, description="7d by default")
    grace: str | None = Field(default=None, description="24h by default")
    force: bool = False
