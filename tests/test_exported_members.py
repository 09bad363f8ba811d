"""The public API is exactly what ``remstate.__all__`` lists (httpx ``test_exported_members``)."""

from __future__ import annotations
import __future__

import inspect
import types
import typing

import pytest

import remstate
from remstate import RemstateError, StateManager

#: The names a caller of the quick start needs; dropping one breaks them.
REQUIRED = {
    "StateManager",
    "TaskState",
    "FeedbackEntry",
    "IterationRecord",
    "MaxIterationsReached",
    "StateNotFound",
    "RemstateError",
}

#: The errors a caller branches on when the store is down, full or contended.
#: ``CorruptStore`` is what a damaged embedded store file gives.
OUTAGE_ERRORS = {
    "Unavailable",
    "OutcomeUnknown",
    "ServerFault",
    "RetriesExhausted",
    "CorruptStore",
}

#: The exception classes ``__all__`` exports.
EXPORTED_EXCEPTIONS = [
    name
    for name in remstate.__all__
    if isinstance(getattr(remstate, name, None), type)
    and issubclass(getattr(remstate, name), BaseException)
]


def _defined_public_names() -> set[str]:
    """Public names bound in ``remstate/__init__``, less what Python binds there itself."""
    return {
        name
        for name, value in vars(remstate).items()
        if not name.startswith("_")
        # Importing ``remstate.errors`` binds ``errors`` on the package: a
        # submodule is reached by its dotted path, not exported.
        and not isinstance(value, types.ModuleType)
        # ``from __future__ import annotations`` binds ``annotations``.
        and value is not __future__.annotations
    }


def _returned_classes() -> dict[str, set[type]]:
    """Our classes named in the return annotation of each public ``StateManager`` method."""

    def ours(hint: object) -> set[type]:
        found: set[type] = set()
        if isinstance(hint, type) and hint.__module__.startswith("remstate."):
            found.add(hint)
        for arg in typing.get_args(hint):
            found |= ours(arg)
        return found

    return {
        name: ours(typing.get_type_hints(method).get("return"))
        for name, method in inspect.getmembers(StateManager, inspect.isfunction)
        if not name.startswith("_")
    }


class TestAll:
    def test_every_listed_name_exists(self) -> None:
        """Every name in ``__all__`` is an attribute of the package."""
        missing = [name for name in remstate.__all__ if not hasattr(remstate, name)]
        assert missing == []

    def test_every_listed_name_is_public(self) -> None:
        """No name in ``__all__`` starts with an underscore."""
        assert [name for name in remstate.__all__ if name.startswith("_")] == []

    def test_no_name_is_listed_twice(self) -> None:
        """Each name appears in ``__all__`` once."""
        assert len(remstate.__all__) == len(set(remstate.__all__))

    def test_the_quick_start_names_are_listed(self) -> None:
        """The manager, the state model and the errors a caller catches are exported."""
        assert sorted(REQUIRED - set(remstate.__all__)) == []

    def test_every_public_name_defined_is_listed(self) -> None:
        """A public name bound in ``remstate/__init__`` is in ``__all__``."""
        assert sorted(_defined_public_names() - set(remstate.__all__)) == []

    def test_what_the_manager_returns_is_listed(self) -> None:
        """Each class a public ``StateManager`` method returns is the one ``remstate`` exports."""
        returned = _returned_classes()
        assert returned["get_state"] == {remstate.TaskState}
        unexported = {
            f"{method} -> {cls.__module__}.{cls.__qualname__}"
            for method, classes in returned.items()
            for cls in classes
            if getattr(remstate, cls.__name__, None) is not cls
        }
        assert sorted(unexported) == []

    def test_the_outage_errors_are_listed(self) -> None:
        """The errors of an outage, a full server, contention and a damaged file are exported."""
        assert sorted(OUTAGE_ERRORS - set(remstate.__all__)) == []

    @pytest.mark.parametrize("name", EXPORTED_EXCEPTIONS)
    def test_exported_exception_is_a_remstate_error(self, name: str) -> None:
        """Every exception in ``__all__`` subclasses ``RemstateError``: one except catches all."""
        assert issubclass(getattr(remstate, name), RemstateError)


def _drawn_errors() -> set[str]:
    """The class names the tree in ``remstate.errors``'s docstring draws."""
    import re

    import remstate.errors

    return set(re.findall(r"[├└]── (\w+)", remstate.errors.__doc__ or "")) | {"RemstateError"}


class TestErrorsAndStores:
    def test_every_error_the_tree_draws_is_listed(self) -> None:
        """Each class drawn in the errors tree, and ``ApiStatus`` they carry, is exported."""
        drawn = _drawn_errors()
        assert {"Gone", "InvalidObject", "StoreError"} <= drawn
        assert sorted((drawn | {"ApiStatus"}) - set(remstate.__all__)) == []

    @pytest.mark.parametrize("name", ["EmbeddedStore", "KubernetesStore"])
    def test_the_store_classes_are_listed(self, name: str) -> None:
        """The stores a caller passes to ``StateManager(store)`` are exported, as the classes."""
        import remstate.store

        assert name in remstate.__all__
        assert getattr(remstate, name) is getattr(remstate.store, name)

    def test_importing_remstate_loads_no_backend(self) -> None:
        """``import remstate`` loads neither the Kubernetes client nor sqlite3."""
        import subprocess
        import sys

        code = (
            "import sys, remstate; "
            "print(sorted(m for m in ('kubernetes', 'sqlite3') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        assert out.strip() == "[]"
