"""Request body size limits, enforced on the declared length and on the bytes actually received."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, default_limit: int, upload_limit: int, upload_paths: tuple[str, ...]):
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.default_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _reject(scope, send, limit)
                return
        received = 0
        started = rejected = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:  # we already answered 413; drop what the app says afterwards
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not rejected:
                        rejected = True
                        await _reject(scope, send, limit)
                    return {"type": "http.disconnect"}  # the app stops reading
            return message

        await self.app(scope, limited_receive, guarded_send)


async def _reject(scope: Scope, send: Send, limit: int) -> None:
    import json

    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "detail": f"request body exceeds {limit} bytes (or has an invalid Content-Length)",
        "instance": scope["path"],
    }
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
