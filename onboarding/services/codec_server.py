"""The codec server: decrypts payloads for the Temporal Web UI and the `temporal` CLI, so that
authorised reviewers read what Temporal stores encrypted (onboarding.temporal.codec), and clients
without keys (a reviewer's laptop) encrypt through it.

    python -m onboarding.services.codec_server     (PAYLOAD_ENCRYPTION_KEYS, CODEC_*: see README)

Temporal's remote codec protocol: `POST /encode` and `POST /decode`, also under a prefix
(`/default/decode`: only the last part of the path counts), with `{"payloads": [...]}` in
protobuf's JSON form, answered in kind; 400 for a body or a payload it cannot handle, 413 for
a payload to encode larger than any decision may be (LARGEST_DECISION_BYTES; every
application's input is smaller, tests/test_bounds.py): it does not know which decision a
payload is, so it holds each to the largest, which keeps every update it encodes well under
Temporal's blob limit (an update above that would wedge the application). A decision above its
own cap but under this one reaches the workflow, which refuses it undecoded, on the record.
The Web UI calls it from the reviewer's browser, so it answers CORS preflights from the
CODEC_ALLOWED_ORIGINS. With CODEC_AUTH_TOKEN set, encode and decode need
`Authorization: Bearer <token>`: the CLI sends it with `--codec-auth`, our clients by
themselves; the Web UI can only forward its own login's token, so where the UI is used the
server stays where the UI is (README). Each request is logged with its outcome, never with
its payloads.
"""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.core.service import run_until_stopped
from onboarding.domain.decisions import LARGEST_DECISION_BYTES
from onboarding.temporal.codec import PayloadEncryption, PayloadEncryptionError, payload_encryption

log = get_logger("codec_server")

# Temporal's own limit on one gRPC message: no request from the UI or the CLI is larger.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"

CODEC = web.AppKey("codec", PayloadEncryption)
TOKEN = web.AppKey("token", str)  # "" when none is required
ORIGINS = web.AppKey("origins", frozenset)


def build_app(settings: Settings) -> web.Application:
    if not settings.payload_encryption_keys:
        raise SystemExit("PAYLOAD_ENCRYPTION_KEYS is not set: the codec server has no keys")
    app = web.Application(middlewares=[cors], client_max_size=MAX_REQUEST_BYTES)
    app[CODEC] = payload_encryption(settings)
    app[TOKEN] = settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else ""
    app[ORIGINS] = frozenset(o.strip() for o in settings.codec_allowed_origins.split(",")
                             if o.strip())
    for operation in ("encode", "decode"):
        for path in (f"/{operation}", f"/{{prefix:.+}}/{operation}"):
            app.router.add_post(path, apply_codec)
            app.router.add_route("OPTIONS", path, preflight)
    app.router.add_get("/healthz", healthz)
    return app


async def apply_codec(request: web.Request) -> web.Response:
    """POST .../encode or .../decode: Payloads in, Payloads out."""
    operation = request.path.rsplit("/", 1)[-1]
    codec = request.app[CODEC]
    where = {"operation": operation, "path": request.path,
             "namespace": request.headers.get("X-Namespace"), "remote": request.remote}
    if not authorised(request):
        log.warning("codec request refused: no valid token", **where)
        return web.json_response({"error": "a valid bearer token is required"},
                                 status=401, headers={"WWW-Authenticate": "Bearer"})
    try:
        payloads = json_format.Parse(await request.read(), Payloads()).payloads
        if operation == "encode" and (oversized := too_large(payloads)):
            log.warning("codec request refused: payload too large", reason=oversized, **where)
            return web.json_response({"error": oversized}, status=413)
        result = await (codec.encode if operation == "encode" else codec.decode)(payloads)
    except (json_format.ParseError, UnicodeDecodeError):
        log.warning("codec request refused: not Payloads in JSON", **where)
        return web.json_response(
            {"error": 'the body must be {"payloads": [...]} in protobuf\'s JSON form'},
            status=400)
    except PayloadEncryptionError as err:  # names the key id, never the contents
        log.warning("codec request refused", reason=str(err), **where)
        return web.json_response({"error": str(err)}, status=400)
    log.info("codec request served", payloads=len(result), **where)
    return web.json_response(text=json_format.MessageToJson(Payloads(payloads=result)))


def too_large(payloads) -> str | None:
    """Why these payloads are not encoded (the first too large, by its index), or None."""
    for i, payload in enumerate(payloads):
        if len(payload.data) > LARGEST_DECISION_BYTES:
            return (f"payloads[{i}]: {len(payload.data)} bytes; a decision may have at most "
                    f"{LARGEST_DECISION_BYTES} [too_large]")
    return None


def authorised(request: web.Request) -> bool:
    token = request.app[TOKEN]
    if not token:
        return True
    presented = request.headers.get("Authorization", "")
    return hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


async def preflight(request: web.Request) -> web.Response:
    """The browser asks before the Web UI's first POST (it sends X-Namespace, and maybe
    Authorization): only the UI's own origins get a yes."""
    origin = request.headers.get("Origin")
    if origin not in request.app[ORIGINS]:
        log.warning("codec preflight refused", origin=origin)
        return web.json_response({"error": "origin not allowed"}, status=403)
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": "600",
    })


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    """Every answer to an allowed origin says so, or the browser withholds it from the UI."""
    response = await handler(request)
    origin = request.headers.get("Origin")
    if origin in request.app[ORIGINS]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def start_codec_server(settings: Settings) -> web.AppRunner:
    """Serves on CODEC_SERVER_HOST:CODEC_SERVER_PORT until `await runner.cleanup()`."""
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.codec_server_host, settings.codec_server_port).start()
    log.info("codec server started", host=settings.codec_server_host,
             port=settings.codec_server_port, auth=settings.codec_auth_token is not None,
             allowed_origins=settings.codec_allowed_origins)
    return runner


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    runner = await start_codec_server(settings)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("codec server stopped")


def main() -> None:
    run_until_stopped(serve)


if __name__ == "__main__":
    main()
