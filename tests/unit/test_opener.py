"""The one store opener: every URL parsed in one place, every unusable one one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from remstate.cli import main
from remstate.errors import InvalidInput, NotFound, Unavailable
from remstate.store import EmbeddedStore, StoreURL, open_store, parse_store_url


@pytest.fixture
def no_kubernetes_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KUBECONFIG names a file that does not exist, and this is not a pod."""
    missing = tmp_path / "no-such-kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.delenv("REMSTATE_STORE", raising=False)
    return missing


class TestParse:
    @pytest.mark.parametrize(
        ("url", "parsed"),
        [
            ("sqlite:///var/x.db", StoreURL("sqlite", path="/var/x.db")),
            ("sqlite://rel.db", StoreURL("sqlite", path="rel.db")),
            ("sqlite:///a%20b.db?mode=ro", StoreURL("sqlite", path="/a b.db", mode="ro")),
            ("kubernetes://team-a", StoreURL("kubernetes", namespace="team-a")),
            ("k8s:///team-a", StoreURL("kubernetes", namespace="team-a")),
            ("kubernetes://", StoreURL("kubernetes")),
        ],
    )
    def test_urls(self, url: str, parsed: StoreURL) -> None:
        """Each documented URL form parses to its backend, path, namespace and mode."""
        assert parse_store_url(url) == parsed

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("redis://localhost", "unknown store URL"),
            ("/just/a/path.db", "unknown store URL"),
            ("sqlite://", "no database path"),
            ("sqlite:///x.db?mode=rw&mode=ro", "one query parameter"),
            ("sqlite:///x.db?cache=shared", "one query parameter"),
            ("sqlite:///x.db?mode=write", "mode must be one of"),
        ],
    )
    def test_unusable_urls(self, url: str, message: str) -> None:
        """An unknown scheme, no path or a bad query is InvalidInput, naming the problem."""
        with pytest.raises(InvalidInput, match=message):
            parse_store_url(url)

    def test_not_a_string(self) -> None:
        """A URL that is not a string is InvalidInput."""
        with pytest.raises(InvalidInput, match="is a string"):
            parse_store_url(b"sqlite:///x.db")


class TestOpenEmbedded:
    def test_opens_the_file_in_the_namespace(self, tmp_path: Path) -> None:
        """A sqlite URL opens an EmbeddedStore on that file and namespace."""
        path = tmp_path / "s.db"
        with open_store(f"sqlite://{path}", namespace="team-a") as store:
            assert isinstance(store, EmbeddedStore)
            assert (store.path, store.namespace) == (str(path), "team-a")

    def test_the_stricter_mode_wins(self, tmp_path: Path) -> None:
        """The URL's ?mode=ro wins over mode="rwc": no file is created."""
        path = tmp_path / "s.db"
        with pytest.raises(NotFound):
            open_store(f"sqlite://{path}?mode=ro", mode="rwc")
        with pytest.raises(NotFound):
            open_store(f"sqlite://{path}", mode="rw")
        assert not path.exists()

    def test_an_api_client_is_for_kubernetes_only(self, tmp_path: Path) -> None:
        """An api_client with a sqlite URL is InvalidInput, and no file is made."""
        path = tmp_path / "s.db"
        with pytest.raises(InvalidInput, match="api_client"):
            open_store(f"sqlite://{path}", api_client=object())  # type: ignore[arg-type]
        assert not path.exists()


class TestNoKubernetesConfiguration:
    def test_missing_kubeconfig_is_unavailable(self, no_kubernetes_configuration: Path) -> None:
        """No kubeconfig and no pod: one Unavailable line that names the file."""
        with pytest.raises(Unavailable) as caught:
            open_store("kubernetes://team-a")
        message = str(caught.value)
        assert str(no_kubernetes_configuration) in message
        assert "\n" not in message
        assert caught.value.status.code == 503

    def test_broken_kubeconfig_is_unavailable(self, no_kubernetes_configuration: Path) -> None:
        """A kubeconfig that is not YAML: one Unavailable line, not a parser's report."""
        no_kubernetes_configuration.write_text("apiVersion: v1\nclusters: [\n  - {name: x\n")
        with pytest.raises(Unavailable) as caught:
            open_store("kubernetes://team-a")
        assert "\n" not in str(caught.value)
        assert str(no_kubernetes_configuration) in str(caught.value)

    def test_the_cli_exits_6_with_one_line(
        self, no_kubernetes_configuration: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The CLI on a kubernetes:// store with no configuration exits 6 with one line."""
        code = main(["--store", "kubernetes://team-a", "get", "42"])
        err = capsys.readouterr().err
        assert code == 6
        assert len(err.splitlines()) == 1
        assert err.startswith("remstate: the store is unavailable: no Kubernetes configuration")


def _kubeconfig(path: Path) -> Path:
    """A kubeconfig with two contexts (never contacted: loading it sends nothing)."""
    path.write_text(
        """{"apiVersion": "v1", "kind": "Config",
 "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
 "users": [{"name": "u", "user": {"token": "t"}}],
 "contexts": [{"name": "one", "context": {"cluster": "c", "user": "u", "namespace": "team-1"}},
              {"name": "two", "context": {"cluster": "c", "user": "u"}}],
 "current-context": "one"}
"""
    )
    return path


class TestKubeconfigAndContext:
    def test_the_contexts_namespace(
        self, tmp_path: Path, no_kubernetes_configuration: Path
    ) -> None:
        """kubernetes:// alone: the context's namespace (else default); -n or the URL's wins."""
        kubeconfig = str(_kubeconfig(tmp_path / "kc"))
        with open_store("kubernetes://", kubeconfig=kubeconfig) as store:
            assert store.namespace == "team-1"
        with open_store("kubernetes://", kubeconfig=kubeconfig, context="two") as store:
            assert store.namespace == "default"
        with open_store("kubernetes://", kubeconfig=kubeconfig, namespace="n") as store:
            assert store.namespace == "n"
        with open_store("kubernetes://url-ns", kubeconfig=kubeconfig) as store:
            assert store.namespace == "url-ns"

    def test_an_unknown_context(self, tmp_path: Path, no_kubernetes_configuration: Path) -> None:
        """A context the kubeconfig lacks: Unavailable naming the file, never the pod's config."""
        kubeconfig = str(_kubeconfig(tmp_path / "kc"))
        with pytest.raises(Unavailable, match="kc"):
            open_store("kubernetes://", kubeconfig=kubeconfig, context="three")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"kubeconfig": "/x"}, "kubeconfig is for a kubernetes"),
            ({"context": "one"}, "context is for a kubernetes"),
        ],
    )
    def test_not_for_sqlite(self, tmp_path: Path, options: dict[str, str], message: str) -> None:
        """A kubeconfig or context with a sqlite URL is InvalidInput, and no file is made."""
        path = tmp_path / "s.db"
        with pytest.raises(InvalidInput, match=message):
            open_store(f"sqlite://{path}", **options)
        assert not path.exists()

    def test_url_and_namespace_disagree(self) -> None:
        """A URL naming one namespace and an option naming another: InvalidInput."""
        with pytest.raises(InvalidInput, match="names namespace 'a', not 'b'"):
            open_store("kubernetes://a", namespace="b")
