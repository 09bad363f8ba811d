"""A child process taking part in an election, for ``test_leader_processes.py``.

    python -m tests.electors lease KUBECONFIG NAMESPACE IDENTITY
    python -m tests.electors file LOCKFILE IDENTITY RETRY_PERIOD

It prints one line per event, flushed: ``ready`` after its first round,
``started`` and ``stopped`` as it gains and loses leadership, ``released``
when SIGTERM made it give leadership back (then it exits 0). The Lease
elector talks through a Kubernetes store's own client, as the service does.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence


def say(word: str) -> None:
    print(word, flush=True)


def main(argv: Sequence[str]) -> int:
    from remstate.service.filelock import FileLockElection
    from remstate.service.lease import LeaseElection
    from remstate.store.kubernetes import KubernetesStore

    election: LeaseElection | FileLockElection
    kind, *rest = argv
    if kind == "lease":
        kubeconfig, namespace, identity = rest
        store = KubernetesStore.from_kubeconfig(kubeconfig, namespace=namespace)
        election = LeaseElection(
            store.api_client,
            namespace,
            identity=identity,
            on_started_leading=lambda: say("started"),
            on_stopped_leading=lambda: say("stopped"),
        )
        election.try_acquire_or_renew()
    else:
        path, identity, retry = rest
        election = FileLockElection(
            path,
            identity=identity,
            retry_period=float(retry),
            on_started_leading=lambda: say("started"),
            on_stopped_leading=lambda: say("stopped"),
        )
        election.try_acquire()
    say("ready")
    election.start()
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.set())
    terminated.wait()
    election.release()
    say("released")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
