"""remstate: the state of agent remediation loops, kept in Kubernetes ConfigMaps.

The public API is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from remstate.errors import (
    AlreadyExists,
    Conflict,
    CorruptState,
    Forbidden,
    InvalidInput,
    MaxIterationsReached,
    NotFound,
    RemstateError,
    RetriesExhausted,
    StateError,
    StateNotFound,
    StoreError,
    Unavailable,
    UnsupportedSchemaVersion,
)
from remstate.manager import ErrorPage, FeedbackPage, IterationPage, StateManager
from remstate.retry import RetryPolicy
from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    IssueType,
    IterationRecord,
    Severity,
    Status,
    TaskState,
)

__all__ = [
    "AlreadyExists",
    "Conflict",
    "CorruptState",
    "ErrorPage",
    "ErrorRecord",
    "FeedbackEntry",
    "FeedbackPage",
    "Forbidden",
    "InvalidInput",
    "IssueType",
    "IterationPage",
    "IterationRecord",
    "MaxIterationsReached",
    "NotFound",
    "RemstateError",
    "RetriesExhausted",
    "RetryPolicy",
    "Severity",
    "StateError",
    "StateManager",
    "StateNotFound",
    "Status",
    "StoreError",
    "TaskState",
    "Unavailable",
    "UnsupportedSchemaVersion",
]
__version__ = "0.1.0"
