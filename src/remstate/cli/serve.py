"""``remstate serve``: the HTTP API on the store, until SIGTERM.

Registers on ``remstate.cli.commands.app`` when imported (``remstate.cli``
imports it). Locally it binds 127.0.0.1; any other address needs
``--token-file`` (exit 2 otherwise), and then every request but the probes
must carry that token. On Kubernetes, in a pod or bound beyond loopback,
every request but the probes needs a bearer token that the cluster's RBAC
allows (``service.replicas``). Replicas elect a leader (a Lease on
Kubernetes, a file lock beside the embedded database). The periodic
cleanup runs every ``--cleanup-interval`` (6 hours) while this replica
leads, unless ``--no-cleanup``. Each request
waits for an unavailable store at most ``--timeout`` seconds (30 by default).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from remstate.cli.commands import app
from remstate.cli.options import Session, global_options
from remstate.errors import InvalidInput
from remstate.loop import CleanupLoop
from remstate.schema.durations import duration_argument, format_duration
from remstate.service import create_app
from remstate.service.leading import LeaderOnly, leader_only
from remstate.service.replicas import authorizer_for, leadership_for, uses_cluster_auth
from remstate.service.server import DEFAULT_HOST, DEFAULT_PORT, check_binding, run
from remstate.store import parse_store_url

__all__ = ["serve"]


@app.command()
@global_options
def serve(
    c: Session,
    *,
    host: Annotated[str, typer.Option(help="the address to bind")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="the port")] = DEFAULT_PORT,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="require this file's token (Authorization: Bearer) on every request "
            "but the probes; needed to bind a non-loopback address",
            show_default=False,
        ),
    ] = None,
    cleanup_interval: Annotated[
        str, typer.Option(help="how often the leader runs the cleanup: 6h, 30m, 1d...")
    ] = "6h",
    no_cleanup: Annotated[
        bool, typer.Option("--no-cleanup", help="no periodic cleanup (POST /cleanup still runs)")
    ] = False,
) -> None:
    """Serve the HTTP API (docs at /docs) until SIGTERM; exit 0 after a graceful stop."""
    # In a cluster (or bound beyond loopback) on Kubernetes, RBAC decides: see service.replicas.
    cluster_auth = uses_cluster_auth(parse_store_url(c.store_url).backend, host)
    check_binding(host, has_token=token_file is not None or cluster_auth)
    # remstate's own records (cleanup decisions, leadership) beside uvicorn's.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    try:
        interval = duration_argument(cleanup_interval, "--cleanup-interval")
    except InvalidInput as e:
        raise InvalidInput(f"--cleanup-interval: {e}") from None
    with c.manager("rwc") as manager:
        # The manager's own registry: /metrics serves its metrics and the requests'.
        registry = manager.metrics.registry
        authorizer = authorizer_for(
            manager.store, host=host, token_file=token_file, registry=registry
        )
        leadership = leadership_for(manager.store)
        api = create_app(manager, authorizer=authorizer, leadership=leadership, registry=registry)
        following = None
        if not no_cleanup:
            # Asked again before each write: a run stops as soon as leadership is lost.
            job = leader_only(
                leadership, lambda: manager.cleanup_old_states(keep_going=leadership.is_leader)
            )
            loop = CleanupLoop(job, interval=interval, metrics=manager.metrics)
            following = LeaderOnly(loop, leadership)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"remstate serve: {c.store_url} at http://{shown}:{port}/api/v1 "
            f"(dashboard: http://{shown}:{port}/; API docs: http://{shown}:{port}/docs; cleanup: "
            f"{'off' if no_cleanup else 'every ' + format_duration(interval)})",
            err=True,
        )
        code = run(api, leadership=leadership, cleanup=following, host=host, port=port)
    if code:
        raise typer.Exit(code)
