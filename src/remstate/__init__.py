"""remstate: the state of agent remediation loops, kept in Kubernetes ConfigMaps.

The public API is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

import typing

from remstate.cleanup import CleanupItem, CleanupReport
from remstate.errors import (
    AlreadyExists,
    ApiStatus,
    Conflict,
    CorruptState,
    CorruptStore,
    Forbidden,
    Gone,
    InvalidInput,
    InvalidObject,
    MaxIterationsReached,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    RemstateError,
    RetriesExhausted,
    ServerFault,
    StateError,
    StateNotFound,
    StoreError,
    Unavailable,
    UnsupportedSchemaVersion,
)
from remstate.manager import (
    ErrorPage,
    ExportedState,
    FeedbackPage,
    ImportOutcome,
    IterationPage,
    StateManager,
    StatePage,
    StateSummary,
)
from remstate.recovery import Finding, RecoveryReport, RestoreReport, ValidationReport
from remstate.retry import RetryPolicy
from remstate.schema import (
    ErrorRecord,
    FeedbackEntry,
    IssueType,
    IterationRecord,
    Policy,
    Severity,
    Status,
    TaskState,
)
from remstate.snapshots import Snapshot

if typing.TYPE_CHECKING:
    from remstate.store.embedded import EmbeddedStore
    from remstate.store.kubernetes import KubernetesStore

__all__ = [
    "AlreadyExists",
    "ApiStatus",
    "CleanupItem",
    "CleanupReport",
    "Conflict",
    "CorruptState",
    "CorruptStore",
    "EmbeddedStore",
    "ErrorPage",
    "ErrorRecord",
    "ExportedState",
    "FeedbackEntry",
    "FeedbackPage",
    "Finding",
    "Forbidden",
    "Gone",
    "ImportOutcome",
    "InvalidInput",
    "InvalidObject",
    "IssueType",
    "IterationPage",
    "IterationRecord",
    "KubernetesStore",
    "MaxIterationsReached",
    "NotFound",
    "OutcomeUnknown",
    "Policy",
    "PreconditionFailed",
    "RecoveryReport",
    "RemstateError",
    "RestoreReport",
    "RetriesExhausted",
    "RetryPolicy",
    "ServerFault",
    "Severity",
    "Snapshot",
    "StateError",
    "StateManager",
    "StateNotFound",
    "StatePage",
    "StateSummary",
    "Status",
    "StoreError",
    "TaskState",
    "Unavailable",
    "UnsupportedSchemaVersion",
    "ValidationReport",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The store classes are imported on first use: ``import remstate`` loads
    # neither the Kubernetes client nor sqlite3, and using one backend never
    # loads the other.
    if name in ("EmbeddedStore", "KubernetesStore"):
        import remstate.store

        return getattr(remstate.store, name)
    raise AttributeError(f"module 'remstate' has no attribute {name!r}")
