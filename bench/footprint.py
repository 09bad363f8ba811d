"""What a state weighs on the API server and in etcd: the capacity model's inputs.

Three tasks in a namespace of their own, each read back as the API server
serves it (the ConfigMap's JSON, metadata and managedFields included: what
a GET or a watch event carries, and about what etcd stores, which keeps
the object as protobuf):

- ``bare``: created, nothing else;
- ``loop``: a typical remediation loop's whole life: 10 iterations, each
  with one feedback entry of about 250 bytes, 2 error records, and its
  status set to ``completed`` (``requests`` counts the API requests it took);
- ``history``: a history of at least 1 MiB of stored feedback (random text,
  built as the cleanup scan's ``big`` tasks are), most of it moved to
  segments: their count and sizes.

And what a raw PUT costs the server in CPU (kube-apiserver and etcd, from
``bench.servercpu``), over a burst of ``bench.limit``'s PUTs: the unit the
capacity model scales from this machine to a cluster's control plane.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from bench.cleanup import _BATCH, _history
from bench.common import CountingApiClient, Target
from bench.limit import measure_burst
from bench.states import build_bare
from remstate import StateManager
from remstate.schema import managed_selector, object_name

__all__ = ["Footprint", "measure_footprint"]


@dataclass(slots=True)
class Footprint:
    bare_bytes: int = 0
    loop_bytes: int = 0
    loop_requests: int = 0
    loop_writes: int = 0
    history_head_bytes: int = 0
    history_segments: list[int] = field(default_factory=list)
    history_stored_bytes: int = 0
    #: kube-apiserver's and etcd's CPU seconds per raw PUT, over a burst of them.
    put_cpu_seconds: float = 0.0
    puts: int = 0
    #: etcd's bytes in use (``etcd_mvcc_db_total_size_in_use_in_bytes``) grown by
    #: ``etcd_states`` bare states, created one write each.
    etcd_states: int = 0
    etcd_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        segs = self.history_segments
        return {
            "bare_bytes": self.bare_bytes,
            "loop_bytes": self.loop_bytes,
            "loop_requests": self.loop_requests,
            "loop_writes": self.loop_writes,
            "history_head_bytes": self.history_head_bytes,
            "history_segments": len(segs),
            "history_segment_bytes_mean": sum(segs) / len(segs) if segs else None,
            "history_segment_bytes_max": max(segs, default=None),
            "history_total_bytes": self.history_head_bytes + sum(segs),
            "server_cpu_per_put_s": self.put_cpu_seconds / self.puts if self.puts else None,
            "etcd_states": self.etcd_states,
            "etcd_bytes_per_bare_state": self.etcd_bytes / self.etcd_states
            if self.etcd_states
            else None,
        }


def _object_bytes(core: client.CoreV1Api, namespace: str, name: str) -> int:
    # The raw answer (urllib3's), not the model: its length is what the server sent.
    response: Any = core.read_namespaced_config_map(name, namespace, _preload_content=False)
    return len(response.data)


def _etcd_in_use(etcd_url: str) -> int:
    with urllib.request.urlopen(f"{etcd_url}/metrics", timeout=10) as response:  # noqa: S310
        for line in response.read().decode().splitlines():
            if line.startswith("etcd_mvcc_db_total_size_in_use_in_bytes "):
                return int(float(line.split()[1]))
    raise RuntimeError("etcd's metrics have no etcd_mvcc_db_total_size_in_use_in_bytes")


def measure_footprint(
    target: Target, server_cpu: Callable[[], float], etcd_url: str, *, etcd_states: int = 1_000
) -> Footprint:
    """Build the three tasks in ``target``'s (fresh) namespace and weigh them.

    Also the server's CPU per raw PUT (``bench.limit``'s burst), read with
    ``server_cpu``; and what ``etcd_states`` bare states add to etcd's bytes in use.
    """
    result = Footprint()
    before = _etcd_in_use(etcd_url)
    build_bare(target, etcd_states, prefix="etcd")
    result.etcd_states, result.etcd_bytes = etcd_states, _etcd_in_use(etcd_url) - before
    cpu = server_cpu()
    burst = measure_burst(target, seconds=2.0, max_puts=2_000)
    result.put_cpu_seconds, result.puts = server_cpu() - cpu, burst.puts + 3
    api = CountingApiClient(target.configuration())
    core = client.CoreV1Api(api)
    ns = target.namespace
    try:
        with StateManager(api_client=api, namespace=ns) as m:
            m.get_or_create_state("bare")
            result.bare_bytes = _object_bytes(core, ns, object_name("bare"))
            api.requests = 0
            for i in range(10):
                m.increment_iteration("loop", note=f"attempt {i + 1}")
                m.append_feedback(
                    "loop",
                    author="reviewer",
                    severity="medium",
                    issue_type="bug",
                    description=f"iteration {i + 1}: " + "the fix misses the retry path; " * 6,
                )
            m.record_error("loop", "the test suite timed out after 600 s")
            m.record_error("loop", "the linter found 3 new warnings")
            m.set_status("loop", "completed")
            result.loop_requests, result.loop_writes = api.requests, 23
            result.loop_bytes = _object_bytes(core, ns, object_name("loop"))
            entries = _history("footprint")
            for first in range(0, len(entries), _BATCH):
                m.append_feedback_many("history", entries[first : first + _BATCH])
        result.history_head_bytes = _object_bytes(core, ns, object_name("history"))
        listed: Any = core.list_namespaced_config_map(
            ns, label_selector=managed_selector(), _preload_content=False
        )
        for item in json.loads(listed.data)["items"]:
            name = item["metadata"]["name"]
            if name.startswith(object_name("history") + "-h"):
                result.history_segments.append(len(json.dumps(item, separators=(",", ":"))))
        return result
    finally:
        api.close()
