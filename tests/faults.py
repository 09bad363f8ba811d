"""Network faults for outage tests: a server that never answers, a relay that loses answers.

Both are real sockets on 127.0.0.1 in front of (or instead of) the real API
server: the client under test runs unchanged, TLS and all. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

__all__ = ["HungServer", "Relay", "hung_server"]


def _listener() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0))
    # accept() wakes up now and then to see whether to stop: closing a socket
    # does not wake a thread blocked in accept() on Linux.
    listener.settimeout(0.2)
    return listener


class HungServer:
    """A port on 127.0.0.1 that accepts connections and then never says a word."""

    def __init__(self) -> None:
        self.listener = _listener()
        self.port = int(self.listener.getsockname()[1])
        self._closed = threading.Event()
        #: Every connection accepted, kept open, never read from or written to.
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@contextlib.contextmanager
def hung_server() -> Iterator[HungServer]:
    """A server that accepts connections and never answers, for the duration."""
    server = HungServer()
    try:
        yield server
    finally:
        server.close()


class Relay:
    """A TCP relay on 127.0.0.1 to an upstream port, which can lose the server's answers.

    :meth:`lose_answers` makes every connection open at that moment drop what
    the server sends from then on, while still passing on what the client
    sends: a request goes through and is carried out, and its answer is lost,
    as when a network fails between the two. Connections opened later pass
    everything (or, with ``refuse_new``, are closed at once). The relay sees
    only TLS records, so it cannot pick one request; tests pick the moment.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = _listener()
        self.port = int(self.listener.getsockname()[1])
        #: Bytes the server sent that never reached the client.
        self.lost = 0
        self.refuse_new = False
        self._lossy: set[socket.socket] = set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def lose_answers(self) -> None:
        """From now on, drop the server's bytes on every connection open now."""
        with self._lock:
            self._lossy |= self._open

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.refuse_new:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()  # the server is down: the client sees a closed connection
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.add(client)
            self._start(self._pump, client, upstream, None)
            self._start(self._pump, upstream, client, client)

    def _pump(
        self, src: socket.socket, dst: socket.socket, answers_to: socket.socket | None
    ) -> None:
        """Copy src to dst; for the server's side (``answers_to``), drop bytes once lossy."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers_to is not None:
                    with self._lock:
                        lossy = answers_to in self._lossy
                        if lossy:
                            self.lost += len(data)
                    if lossy:
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            src.close()  # each socket is the source of one pump: closed once

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self.listener.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
