"""remstate: the state of agent remediation loops, kept in Kubernetes ConfigMaps.

The public API is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from remstate.errors import (
    AlreadyExists,
    Conflict,
    CorruptState,
    CorruptStore,
    Forbidden,
    InvalidInput,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    RemstateError,
    RetriesExhausted,
    ServerFault,
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
    "CorruptStore",
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
    "OutcomeUnknown",
    "RemstateError",
    "RetriesExhausted",
    "RetryPolicy",
    "ServerFault",
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
