"""The limit: how fast this API server and etcd take PUTs to one ConfigMap.

A minimal client, so that the figure is the server's and not a client's: one
``http.client.HTTPSConnection`` kept alive, the admin's bearer token, TLS
verified against the plane's CA, a prebuilt body, no JSON decoding of the
answer. One writer, unconditional PUTs (no resourceVersion), each changing
the data: a PUT that changes nothing is answered without writing to etcd.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.common import Target, median, now

__all__ = ["LimitBurst", "measure_burst"]

NAME = "bench-limit"


@dataclass(slots=True)
class LimitBurst:
    """One burst of PUTs."""

    puts: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.puts / self.seconds if self.seconds > 0 else float("nan")

    @property
    def median_latency(self) -> float:
        return median(self.latencies)


class _Connection:
    def __init__(self, target: Target) -> None:
        parts = urlsplit(target.server)
        context = ssl.create_default_context(cafile=target.ca_file)
        self._conn = http.client.HTTPSConnection(
            parts.hostname or "127.0.0.1", parts.port or 443, context=context, timeout=30
        )
        self._headers = {
            "Authorization": f"Bearer {target.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.collection = f"/api/v1/namespaces/{target.namespace}/configmaps"
        self.item = f"{self.collection}/{NAME}"
        self._namespace = target.namespace

    def body(self, value: int) -> bytes:
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": self._namespace},
            "data": {"n": str(value)},
        }
        return json.dumps(manifest).encode()

    def send(self, method: str, path: str, body: bytes | None = None) -> int:
        self._conn.request(method, path, body=body, headers=self._headers)
        response = self._conn.getresponse()
        response.read()  # the whole answer, so the connection can be reused
        return response.status

    def close(self) -> None:
        self._conn.close()


def measure_burst(target: Target, *, seconds: float, max_puts: int) -> LimitBurst:
    """PUT to one ConfigMap as fast as one keep-alive connection allows, within the bounds."""
    conn = _Connection(target)
    try:
        status = conn.send("POST", conn.collection, conn.body(0))
        if status not in (201, 409):  # 409: an earlier burst created it
            raise RuntimeError(f"creating {NAME}: HTTP {status}")
        # Bodies are built before the clock starts: the figure is the server's.
        bodies = [conn.body(i) for i in range(1, max_puts + 1)]
        conn.send("PUT", conn.item, bodies[-1])  # warm: TLS session, authentication cache
        burst = LimitBurst(puts=0, seconds=0.0)
        start = now()
        deadline = start + seconds
        for body in bodies[:-1]:
            began = now()
            status = conn.send("PUT", conn.item, body)
            ended = now()
            if status != 200:
                raise RuntimeError(f"PUT {NAME}: HTTP {status}")
            burst.latencies.append(ended - began)
            burst.puts += 1
            if ended >= deadline:
                break
        burst.seconds = now() - start
        conn.send("DELETE", conn.item)
        return burst
    finally:
        conn.close()
