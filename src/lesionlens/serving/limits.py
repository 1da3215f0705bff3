"""Refuse oversized request bodies before they are parsed (an ASGI middleware).

A declared Content-Length over the limit is answered 413 at once; a body without one (chunked) is
read only up to the limit. The body is then handed on unchanged. Per-file limits are checked again
after parsing, so the error can name the file.
"""

from __future__ import annotations

import json
from typing import Callable


class BodyLimit:
    def __init__(self, app, limit_for: Callable[[str], tuple[int, str]]):
        """``limit_for(path)`` -> (largest body in bytes, how that limit is made up, for the message)."""
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit, why = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await _reply(send, 400, "bad_content_length", f"Content-Length {declared[:40]!r} is not a number")
            if length > limit:
                return await _reply(send, 413, "upload_too_large",
                                    f"the request body is {length:,} bytes; the limit is {limit:,} ({why})")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                return await _reply(send, 413, "upload_too_large",
                                    f"the request body is more than the limit of {limit:,} bytes ({why})")
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


async def _reply(send, status: int, code: str, message: str) -> None:
    payload = json.dumps({"error": {"status": status, "code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
