"""Run the service under uvicorn, and stop it gracefully on SIGTERM (or SIGINT).

Design constraint: a replica that is told to stop (a rolling update, a
scale-down) loses no request and hands leadership over at once. uvicorn
handles the signal: it stops accepting connections and lets the requests in
flight finish (up to ``graceful_timeout`` seconds); the event streams, which
never finish, are ended at once. Then, in this order, the
periodic cleanup stops (a run under way finishes: its writes are
compare-and-swaps) and leadership is released, so another replica takes over
without waiting for a lease to run out. The process then exits 0.

Binding: loopback by default; ``check_binding`` refuses any other address
unless requests must carry a token, so a laptop's state is never open to
its network by accident.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from remstate.errors import InvalidInput
from remstate.service.events import EventHub
from remstate.service.leadership import Leadership
from remstate.service.leading import LeaderOnly

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "check_binding", "is_loopback", "run"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _Server(uvicorn.Server):
    """uvicorn's server, whose graceful stop on a signal is a normal return.

    uvicorn raises the signal it caught again once it has shut down, so that
    the default handler ends the process (exit -15): before the cleanup loop
    stops and leadership is released. A graceful stop is our normal exit, 0.
    """

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()
        # The event streams never finish by themselves: end them now, or the
        # graceful shutdown would wait its whole timeout for them.
        self._on_exit()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``); ``0.0.0.0`` is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_binding(host: str, *, has_token: bool) -> None:
    """Refuse a non-loopback address without a token file.

    Raises:
        InvalidInput: ``host`` is not loopback and requests need no token.
    """
    if not is_loopback(host) and not has_token:
        raise InvalidInput(
            f"--host {host} is not a loopback address: give --token-file too, so that "
            "requests from the network must carry its token"
        )


def run(
    app: FastAPI,
    *,
    leadership: Leadership,
    cleanup: LeaderOnly | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    graceful_timeout: int = 60,
    log_level: str = "info",
) -> int:
    """Serve ``app`` until SIGTERM or SIGINT; then stop cleanup, release leadership; 0.

    Returns 1 if the server could not start (the port is taken, say).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_timeout,
        # remstate's own handlers turn every error into problem+json; the
        # server's header says nothing a client needs.
        server_header=False,
    )
    hub = getattr(app.state, "events", None)
    server = _Server(
        config, on_exit=hub.close_threadsafe if isinstance(hub, EventHub) else lambda: None
    )
    leadership.start()
    if cleanup is not None:
        cleanup.start()
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind
        logger.error("remstate serve: the server did not start (%s)", e)
        return 1
    finally:
        if cleanup is not None:
            cleanup.stop()
        leadership.release()
        logger.info("remstate serve: stopped; leadership released")
    return 0 if server.started else 1
