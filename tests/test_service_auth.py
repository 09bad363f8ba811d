"""Who may call the service locally: loopback without a token, a token file otherwise.

And the 403 path of an authorizer that refuses a verb (the reader of
``tests.service.Readers``): it names the verb and the resource, and nothing
is written. The probes are open whatever the authorizer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from remstate import InvalidInput
from remstate.cli import main
from remstate.service.auth import TokenFile
from remstate.service.server import check_binding, is_loopback
from remstate.store import Store
from tests.service import Readers, build, problem

API = "/api/v1"
#: The address these tests refuse (they never bind it).
WILDCARD = "0.0.0.0"  # noqa: S104


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    return path


@pytest.fixture
def client(store: Store, token_file: Path) -> TestClient:
    return build(store, authorizer=TokenFile(token_file))[0]


class TestTokenFile:
    def test_no_token_is_401_with_www_authenticate(self, client: TestClient) -> None:
        """Without a token: 401 unauthenticated, ``WWW-Authenticate: Bearer``, nothing written."""
        response = client.post(f"{API}/tasks/t1/iterations", json={})
        problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
        token = {"Authorization": "Bearer s3cret-token"}
        problem(client.get(f"{API}/tasks/t1", headers=token), 404, "not-found")

    @pytest.mark.parametrize(
        "header", ["Bearer wrong", "Basic czNjcmV0LXRva2Vu", "s3cret-token", "Bearer "]
    )
    def test_a_wrong_token_or_scheme_is_401(self, client: TestClient, header: str) -> None:
        """Another token, another scheme, no scheme, an empty token: 401."""
        response = client.get(f"{API}/tasks", headers={"Authorization": header})
        problem(response, 401, "unauthenticated")

    def test_authentication_comes_before_validation(self, client: TestClient) -> None:
        """A caller without the token learns nothing of the body's rules: 401, not 422."""
        problem(client.post(f"{API}/tasks/t1/iterations", json={"note": 5}), 401, "unauthenticated")
        problem(client.get(f"{API}/tasks", params={"limit": 0}), 401, "unauthenticated")

    def test_the_token_is_let_through(self, client: TestClient) -> None:
        """The file's token (its newline ignored) may read and write."""
        token = {"Authorization": "Bearer s3cret-token"}
        assert client.post(f"{API}/tasks/t1/iterations", json={}, headers=token).status_code == 200
        assert client.get(f"{API}/tasks/t1", headers=token).json()["iteration"] == 1

    def test_probes_are_open(self, client: TestClient) -> None:
        """/healthz and /readyz need no token."""
        for path in ("/healthz", "/readyz"):
            assert client.get(path).status_code == 200, path

    def test_metrics_need_the_token(self, client: TestClient) -> None:
        """/metrics is not a probe: without the token 401, with it Prometheus text."""
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        scraped = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert scraped.status_code == 200
        assert "remstate_http_requests" in scraped.text or "# HELP" in scraped.text

    @pytest.mark.parametrize("content", ["", "  \n", "two words"])
    def test_a_file_without_one_token_is_refused(self, tmp_path: Path, content: str) -> None:
        """An empty file, or one holding more than one word, is InvalidInput."""
        path = tmp_path / "token"
        path.write_text(content)
        with pytest.raises(InvalidInput, match="holds no token"):
            TokenFile(path)

    def test_a_missing_file_is_refused(self, tmp_path: Path) -> None:
        """A file that cannot be read is InvalidInput naming it."""
        with pytest.raises(InvalidInput, match="cannot read the token file"):
            TokenFile(tmp_path / "absent")


class TestForbidden:
    def test_a_reader_reads_but_may_not_write(self, store: Store) -> None:
        """403 forbidden names the verbs and the resource; the state is not created."""
        client = build(store, authorizer=Readers())[0]
        reader = {"Authorization": "Bearer reader"}
        response = client.post(f"{API}/tasks/t1/iterations", json={}, headers=reader)
        body = problem(response, 403, "forbidden")
        assert (body["verb"], body["resource"]) == (
            "create and update",
            "configmaps in namespace agents",
        )
        assert "reader may not create and update configmaps" in body["detail"]
        problem(client.get(f"{API}/tasks/t1", headers=reader), 404, "not-found")
        problem(client.delete(f"{API}/tasks/t1", headers=reader), 403, "forbidden")
        problem(client.post(f"{API}/cleanup", json={}, headers=reader), 403, "forbidden")


class TestBinding:
    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.0.0.2", True),
            ("::1", True),
            ("[::1]", True),
            ("localhost", True),
            (WILDCARD, False),
            ("::", False),
            ("192.168.1.5", False),
            ("example.com", False),
        ],
    )
    def test_loopback(self, host: str, loopback: bool) -> None:
        """Only loopback addresses (and localhost) are loopback; a wildcard is not."""
        assert is_loopback(host) is loopback

    def test_a_non_loopback_address_needs_a_token(self) -> None:
        """check_binding refuses 0.0.0.0 without a token file, and lets it through with one."""
        with pytest.raises(InvalidInput, match="--token-file"):
            check_binding(WILDCARD, has_token=False)
        check_binding(WILDCARD, has_token=True)
        check_binding("127.0.0.1", has_token=False)

    def test_remstate_serve_refuses_it_with_exit_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``remstate serve --host 0.0.0.0`` without --token-file exits 2, with one line."""
        store = f"sqlite://{tmp_path / 'state.db'}"
        assert main(["serve", "--host", WILDCARD, "--store", store]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "--token-file" in err
        assert not (tmp_path / "state.db").exists()

    def test_a_bad_cleanup_interval_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--cleanup-interval soon`` exits 2 before anything starts."""
        store = f"sqlite://{tmp_path / 'state.db'}"
        assert main(["serve", "--cleanup-interval", "soon", "--store", store]) == 2
        assert "--cleanup-interval" in capsys.readouterr().err


class TestLoopbackOnly:
    """With no token (loopback), other web pages in the user's browser are kept out."""

    @pytest.fixture
    def local(self, store: Store) -> TestClient:
        return build(store)[0]

    def test_a_rebound_host_is_refused_and_loopback_names_are_served(
        self, local: TestClient
    ) -> None:
        """A DNS-rebound name reads nothing; 127.0.0.1, localhost and [::1] are served."""
        assert local.post("/api/v1/tasks/t1/iterations", json={}).status_code == 200
        refused = local.get("/api/v1/tasks/t1", headers={"Host": "rebind.example:8080"})
        problem(refused, 403, "forbidden")
        for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
            assert local.get("/api/v1/tasks/t1", headers={"Host": host}).status_code == 200

    @pytest.mark.parametrize(
        "headers",
        [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}],
    )
    def test_a_write_from_another_site_is_refused_and_writes_nothing(
        self, local: TestClient, headers: dict[str, str]
    ) -> None:
        """A cross-site POST (no preflight: no body) gets 403; the task is unchanged."""
        assert local.post("/api/v1/tasks/t1/iterations", json={}).status_code == 200
        version = local.get("/api/v1/tasks/t1").headers["ETag"]
        problem(local.post("/api/v1/tasks/t1/recover", headers=headers), 403, "forbidden")
        problem(
            local.post("/api/v1/tasks/t1/iterations", json={}, headers=headers), 403, "forbidden"
        )
        assert local.get("/api/v1/tasks/t1").headers["ETag"] == version

    def test_the_dashboard_s_own_origin_may_write(self, local: TestClient) -> None:
        """A page served by the service itself (same origin) writes as before."""
        headers = {"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
        assert (
            local.post("/api/v1/tasks/t1/iterations", json={}, headers=headers).status_code == 200
        )


def test_recover_and_snapshot_restores_need_delete_too(store: Store) -> None:
    """They create snapshots and prune the oldest: an editor without delete is refused."""
    client = build(store, authorizer=Readers())[0]
    editor = {"Authorization": "Bearer editor"}
    assert client.post("/api/v1/tasks/t1/iterations", json={}, headers=editor).status_code == 200
    refused = problem(client.post("/api/v1/tasks/t1/recover", headers=editor), 403, "forbidden")
    assert "delete" in refused["detail"]
    restore = client.post("/api/v1/tasks/t1/snapshots/task-t1-state-s1/restore", headers=editor)
    problem(restore, 403, "forbidden")
    admin = {"Authorization": "Bearer admin"}
    assert client.post("/api/v1/tasks/t1/recover", headers=admin).status_code == 200
