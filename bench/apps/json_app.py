"""The benchmark app for Gunicorn + Uvicorn: an ASGI app that serializes the same JSON
document as bench/apps/json.mjs (200 items) on every request."""
import json

ITEMS = [
    {
        "id": i,
        "name": f"item-{i}",
        "price": round(i * 137.31) / 100,
        "tags": ["alpha", "beta", "gamma"][: (i % 3) + 1],
        "active": i % 2 == 0,
    }
    for i in range(200)
]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    body = json.dumps({"count": len(ITEMS), "items": ITEMS}, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
