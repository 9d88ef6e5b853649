"""The performance suite's app for Gunicorn + Uvicorn: an ASGI app with the same routes as
bench/apps/suite.mjs (/, /json, /stream, /echo)."""
import json

from json_app import ITEMS

HELLO = b"Hello, World!"
STREAM_CHUNK = 64 * 1024
STREAM_CHUNKS = 16
CHUNK = b"x" * STREAM_CHUNK


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send, body, content_type, status=200):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path, method = scope["path"], scope["method"]
    if path == "/":
        return await respond(send, HELLO, b"text/plain; charset=utf-8")
    if path == "/json":
        body = json.dumps({"count": len(ITEMS), "items": ITEMS}, separators=(",", ":")).encode()
        return await respond(send, body, b"application/json")
    if path == "/stream":
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(STREAM_CHUNK * STREAM_CHUNKS).encode())],
        })
        for i in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": i < STREAM_CHUNKS - 1})
        return
    if path == "/echo" and method == "POST":
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        content_type = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        return await respond(send, b"".join(parts), content_type)
    await respond(send, b"Not Found\n", b"text/plain; charset=utf-8", 404)
