"""A request body larger than the service takes is refused, as problem+json (413).

A body that announces its length is refused before a byte of it is read; a
chunked one as soon as what came exceeds the limit (an ``HTTPException``
raised from ``receive``, which the app's handlers turn into the problem).
FastAPI's own ``max_body_size`` is not used: it answers in plain text, from
outside the app's exception handlers.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remstate.service.problems import ProblemKind, problem_response

__all__ = ["BodyLimit"]

TOO_LARGE = ProblemKind("too-large", 413, "Request body too large")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_body:
                detail = f"the body is {int(length)} bytes; this service takes {self.max_body}"
                response = problem_response(TOO_LARGE, detail, Request(scope))
                await response(scope, receive, send)
                return
            await self.app(scope, self._counting(receive), send)
            return
        await self.app(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        seen = [0]

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise HTTPException(413, f"the body exceeds {self.max_body} bytes")
            return message

        return counted
