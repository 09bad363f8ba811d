"""The retry policy: outage and contention end differently, and the deadline holds end to end."""

from __future__ import annotations

import time

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from remstate.errors import Conflict, RetriesExhausted, Unavailable
from remstate.retry import RetryPolicy, remaining
from remstate.store.kubernetes import translate_error


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    """``outer`` as urllib3 raises it: ``raise outer from cause``."""
    outer.__cause__ = cause
    return outer


def _no_sleep(seconds: float) -> None:
    """Retries without waiting: the attempt cap, not the clock, ends these calls."""


class TestGivingUp:
    def test_an_outage_ends_in_the_unavailable_itself(self) -> None:
        """When retries run out on Unavailable, that Unavailable is raised, with the attempts."""
        raised: list[Unavailable] = []

        def down() -> None:
            raised.append(Unavailable("cannot reach the API server: connection refused"))
            raise raised[-1]

        with pytest.raises(Unavailable) as caught:
            RetryPolicy(max_attempts=4).call(down, sleep=_no_sleep)
        assert caught.value is raised[-1]
        assert caught.value.attempts == 4
        assert len(raised) == 4

    def test_contention_ends_in_retries_exhausted(self) -> None:
        """When retries run out on Conflict, RetriesExhausted carries the last Conflict."""

        def contended() -> None:
            raise Conflict("the object has been modified")

        with pytest.raises(RetriesExhausted) as caught:
            RetryPolicy(max_attempts=3).call(contended, sleep=_no_sleep)
        assert isinstance(caught.value.last, Conflict)
        assert caught.value.attempts == 3

    def test_the_deadline_ends_an_outage_however_many_attempts_are_left(self) -> None:
        """With attempts to spare, the deadline still ends the call, and no wait outlasts it."""
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        def down() -> None:
            raise Unavailable("connection refused")

        policy = RetryPolicy(max_attempts=10**6, deadline=0.5)
        with pytest.raises(Unavailable) as caught:
            policy.call(down, sleep=sleep)
        assert caught.value.attempts < 10**6
        assert sum(waits) <= policy.deadline


class TestDeadline:
    def test_no_deadline_outside_a_call(self) -> None:
        """Outside any retry policy, a store has no deadline to respect."""
        assert remaining() is None

    def test_a_call_exposes_what_is_left_of_its_deadline(self) -> None:
        """Inside a call, ``remaining()`` is positive and at most the deadline."""
        left = RetryPolicy(deadline=5).call(remaining)
        assert left is not None
        assert 0 < left <= 5

    def test_a_nested_call_keeps_the_earlier_outer_deadline(self) -> None:
        """A read inside a write's attempt cannot outlive the write's deadline."""
        outer, inner = RetryPolicy(deadline=2), RetryPolicy(deadline=60)
        left = outer.call(lambda: inner.call(remaining))
        assert left is not None
        assert left <= 2

    def test_a_nested_call_keeps_its_own_earlier_deadline(self) -> None:
        """An inner call with a shorter deadline is bounded by its own."""
        outer, inner = RetryPolicy(deadline=60), RetryPolicy(deadline=1)
        left = outer.call(lambda: inner.call(remaining))
        assert left is not None
        assert left <= 1

    def test_the_deadline_is_restored_after_a_call(self) -> None:
        """After a call returns (or raises), the enclosing deadline is back."""

        def down() -> None:
            raise Unavailable("connection refused")

        with pytest.raises(Unavailable):
            RetryPolicy(max_attempts=1).call(down)
        assert remaining() is None


@pytest.mark.parametrize(
    ("exc", "cause", "maybe_applied"),
    [
        (
            _chained(
                urllib3.exceptions.NewConnectionError(
                    None,  # type: ignore[arg-type]
                    "Failed to establish a new connection: [Errno 111] Connection refused",
                ),
                ConnectionRefusedError(111, "Connection refused"),
            ),
            "connection refused",
            False,
        ),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused", False),
        (
            urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."),  # type: ignore[arg-type]
            "no response within the request timeout",
            True,
        ),
        (
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "")),
            "connection reset by peer",
            True,
        ),
        (
            ApiException(
                status=0,
                reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                "unable to get local issuer certificate (_ssl.c:1000)",
            ),
            "TLS failure: certificate verify failed: unable to get local issuer certificate",
            False,
        ),
    ],
)
def test_network_failures_are_one_short_line(
    exc: BaseException, cause: str, maybe_applied: bool
) -> None:
    """A network failure names the server and the cause, and if a request may have applied."""
    server = "https://10.0.0.1:6443"
    error = translate_error(exc, server=server)
    assert type(error) is Unavailable
    assert str(error) == f"cannot reach the API server at {server}: {cause}"
    assert error.maybe_applied is maybe_applied
