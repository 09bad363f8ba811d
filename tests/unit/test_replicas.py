"""Which authorizer and leader election ``remstate serve`` picks for a store (service.replicas)."""

from __future__ import annotations

from pathlib import Path

import pytest

from remstate.errors import InvalidInput
from remstate.service.auth import OpenLocal, TokenFile
from remstate.service.filelock import FileLockElection
from remstate.service.leadership import Always
from remstate.service.replicas import (
    authorizer_for,
    in_a_pod,
    leadership_for,
    uses_cluster_auth,
)
from remstate.store.embedded import EmbeddedStore

POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
#: The address under test: never bound here.
ANY = "0.0.0.0"  # noqa: S104


class TestClusterAuth:
    @pytest.mark.parametrize(
        ("backend", "host", "environ", "expected"),
        [
            ("kubernetes", "127.0.0.1", {}, False),  # a developer's kubeconfig, on loopback
            ("kubernetes", "127.0.0.1", POD, True),  # in a pod: always
            ("kubernetes", ANY, {}, True),  # beyond loopback: always
            ("kubernetes", "::1", {}, False),
            ("sqlite", ANY, POD, False),  # the embedded store has no RBAC
            ("sqlite", "127.0.0.1", {}, False),
        ],
        # Not the backends' names alone: conftest counts tests per backend by id.
        ids=["k8s-loopback", "k8s-pod", "k8s-any", "k8s-ipv6-loopback", "sqlite-pod", "sqlite"],
    )
    def test_rbac_decides_on_kubernetes_in_a_pod_or_beyond_loopback(
        self, backend: str, host: str, environ: dict[str, str], expected: bool
    ) -> None:
        """The table of DESIGN.md rule 7."""
        assert uses_cluster_auth(backend, host, environ) is expected

    def test_a_pod_is_known_by_the_kubelets_variable(self) -> None:
        """KUBERNETES_SERVICE_HOST set and not empty."""
        assert in_a_pod(POD)
        assert not in_a_pod({"KUBERNETES_SERVICE_HOST": ""})
        assert not in_a_pod({})


class TestEmbeddedStore:
    def test_loopback_is_open_and_a_token_file_is_asked_for(self, tmp_path: Path) -> None:
        """OpenLocal without a token file; TokenFile with one."""
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        with EmbeddedStore(str(tmp_path / "state.db")) as store:
            assert isinstance(authorizer_for(store, host="127.0.0.1", token_file=None), OpenLocal)
            chosen = authorizer_for(store, host=ANY, token_file=token, environ=POD)
            assert isinstance(chosen, TokenFile)

    def test_leadership_is_a_lock_file_beside_the_database(self, tmp_path: Path) -> None:
        """``state.db.leader``, with the retry period from the environment."""
        with EmbeddedStore(str(tmp_path / "state.db")) as store:
            chosen = leadership_for(store, environ={"REMSTATE_RETRY_PERIOD": "0.5"})
        assert isinstance(chosen, FileLockElection)
        assert chosen.path == tmp_path / "state.db.leader"
        assert chosen.retry_period == 0.5

    def test_an_in_memory_database_always_leads(self) -> None:
        """No file to lock beside: a single process, Always."""
        with EmbeddedStore(":memory:") as store:
            assert isinstance(leadership_for(store), Always)

    def test_a_timing_that_is_not_a_number_is_invalid_input(self, tmp_path: Path) -> None:
        """One line naming the variable."""
        with (
            EmbeddedStore(str(tmp_path / "state.db")) as store,
            pytest.raises(InvalidInput, match="REMSTATE_RETRY_PERIOD"),
        ):
            leadership_for(store, environ={"REMSTATE_RETRY_PERIOD": "soon"})
