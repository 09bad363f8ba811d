"""What every measurement shares: where the server is, a counting client, a clock.

The clock is ``time.perf_counter``. The contention phases compare its readings
across processes, which holds where it is ``CLOCK_MONOTONIC`` (Linux): one
clock for the whole machine. ``check_clock`` refuses to run elsewhere rather
than report figures from clocks that do not agree.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import client

if TYPE_CHECKING:
    from remstate.testing.controlplane import ControlPlane

__all__ = ["CountingApiClient", "Target", "check_clock", "median", "now"]

now = time.perf_counter


def check_clock() -> None:
    """Fail unless ``perf_counter`` is one clock shared by all processes."""
    implementation = time.get_clock_info("perf_counter").implementation
    if "CLOCK_MONOTONIC" not in implementation:
        raise SystemExit(
            f"bench: perf_counter is {implementation}, not CLOCK_MONOTONIC; "
            "the contention phases need one clock shared by all processes (Linux)"
        )


@dataclass(frozen=True, slots=True)
class Target:
    """The API server and the admin's credentials: small and picklable, for worker processes."""

    server: str
    token: str
    ca_file: str
    namespace: str = "default"

    @classmethod
    def of(cls, plane: ControlPlane, namespace: str = "default") -> Target:
        return cls(plane.server, plane.admin_token, str(plane.ca_file), namespace)

    def configuration(self) -> client.Configuration:
        """The configuration ``ControlPlane.api_client()`` builds: TLS verified, bearer token."""
        return client.Configuration(
            host=self.server,
            api_key={"BearerToken": self.token},
            api_key_prefix={"BearerToken": "Bearer"},
            ssl_ca_cert=self.ca_file,
        )

    def api_client(self) -> CountingApiClient:
        return CountingApiClient(self.configuration())


class CountingApiClient(client.ApiClient):
    """The official client, counting the HTTP requests it sends.

    Every request of the generated ``CoreV1Api`` methods and of remstate's
    ``KubernetesStore`` goes through ``call_api``, so this counts them all,
    whichever way the request was built.
    """

    def __init__(self, configuration: client.Configuration | None = None) -> None:
        super().__init__(configuration)
        self.requests = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return super().call_api(*args, **kwargs)

    def close(self) -> None:
        super().close()  # type: ignore[no-untyped-call]  # the client's methods carry no types


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a bounded run may have measured none)."""
    return statistics.median(values) if values else float("nan")
