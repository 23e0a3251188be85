"""The codec server: decrypts payloads for the Temporal Web UI and the `temporal` CLI, encrypts
for clients without keys, and **seals decisions** for their verified sender (issue 12,
docs/identity.md).

    python -m onboarding.services.codec_server
        PAYLOAD_ENCRYPTION_KEYS, SEALING_KEYS, OIDC_ISSUER (+ OIDC_*), CODEC_*: see README

Temporal's remote codec protocol: `POST /encode` and `POST /decode`, also under a prefix
(`/default/decode`: only the last part of the path counts), with `{"payloads": [...]}` in
protobuf's JSON form, answered in kind; 400 for a body or a payload it cannot handle, 413 for
a payload to encode larger than any decision may be (LARGEST_DECISION_BYTES; every
application's input is smaller, tests/test_bounds.py): which keeps every update it encodes well
under Temporal's blob limit (an update above that would wedge the application).

Who is calling. Every encode and decode needs a verified identity, one of:
- `Authorization: Bearer <access token>` from the operator's OIDC provider, for OIDC_AUDIENCE
  (the `temporal` CLI's `--codec-auth "Bearer …"`, the reviewer CLI, programs with a client
  credentials token, the Web UI with its own OIDC login and TEMPORAL_CODEC_PASS_ACCESS_TOKEN);
- the codec server's own sign-in: GET /login sends the browser to the provider, /callback opens
  a session (cookie `onboarding_codec_session`: HttpOnly, SameSite=Lax, Secure on https), which
  the Web UI sends with its codec setting "include cross-origin credentials". A request riding
  on the cookie must come from an origin of CODEC_ALLOWED_ORIGINS (or this server's own), with
  `Content-Type: application/json` (which no form can send without a preflight): the cookie
  goes with any page of the same site, and CORS alone only hides the answer.
Without one: 401, nothing encoded, nothing sealed. /decode needs one too: decrypting shows the
applicants' data (see docs/identity.md for who may hold a token).

Sealing. On /encode, a payload that is a JSON object carrying `decision_id` is a decision: it
must carry `application_id` and `decision` (its name) too, be a decision people take on that
application's process, and be valid for its model, or it is refused (400, naming each field
and rule: sealing is the only way a decision counts, so an unsealable one is better refused
now than on the record). It is sealed for the caller (its `attestation`,
onboarding.identity.attestation, replacing any it carried) as its model reads it, then
encrypted. A decision larger than its own cap in the catalogue, sealed, is refused (413) as
well. Everything else is encrypted only. Each request is logged with who asked and what was sealed, never with its
payloads.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.core.service import run_until_stopped
from onboarding.identity import oidc
from onboarding.domain.decisions import LARGEST_DECISION_BYTES
from onboarding.identity.attestation import Sealer, Unsealable, sealed_json, sealing_keys
from onboarding.identity.models import VerifiedIdentity
from onboarding.identity.tokens import TokenRefused, TokenVerifier
from onboarding.temporal.codec import PayloadEncryption, PayloadEncryptionError, payload_encryption

log = get_logger("codec_server")

# Temporal's own limit on one gRPC message: no request from the UI or the CLI is larger.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Authorization-Extras, Content-Type, X-Namespace"
SESSION_COOKIE = "onboarding_codec_session"
LOGIN_COOKIE = "onboarding_codec_login"
LOGIN_SECONDS = 600
MAX_SESSIONS = 10_000


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    identity: VerifiedIdentity
    access_token: str
    refresh_token: str | None
    access_expires: float
    ends: float


@dataclass
class Login:
    request: oidc.AuthorizationRequest
    return_to: str | None
    started: float


class CodecServer:
    """What the routes share: keys, the token verifier, sign-ins and sessions."""

    def __init__(self, settings: Settings, codec: PayloadEncryption, sealer: Sealer,
                 verifier: TokenVerifier) -> None:
        self.settings = settings
        self.codec = codec
        self.sealer = sealer
        self.verifier = verifier
        self.origins = frozenset(o.strip() for o in settings.codec_allowed_origins.split(",")
                                 if o.strip())
        public = urlsplit(settings.codec_public_url)
        self.own_origin = f"{public.scheme}://{public.netloc}"
        self.secure_cookies = public.scheme == "https"
        self.sessions: dict[str, Session] = {}
        self.logins: dict[str, Login] = {}
        self._endpoints: oidc.Endpoints | None = None

    async def endpoints(self) -> oidc.Endpoints:
        if self._endpoints is None:
            self._endpoints = await oidc.discover(self.settings.oidc_provider_url
                                                  or self.settings.oidc_issuer)
        return self._endpoints

    @property
    def client_secret(self) -> str | None:
        secret = self.settings.codec_oidc_client_secret
        return secret.get_secret_value() if secret else None

    # --- who is calling --------------------------------------------------------------------

    async def identity(self, request: web.Request) -> VerifiedIdentity:
        """The caller's verified identity, or Refused(401/403) saying why there is none."""
        presented = request.headers.get("Authorization", "")
        if presented:
            scheme, _, token = presented.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Refused(401, "Authorization must be 'Bearer <access token>'")
            try:
                return await asyncio.to_thread(self.verifier.verify, token.strip())
            except TokenRefused as err:
                raise Refused(401, str(err)) from None
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            raise Refused(401, "sign in: a bearer access token, or the codec server's session "
                               f"(open {self.settings.codec_public_url}/login)")
        origin = request.headers.get("Origin")
        if origin not in self.origins and origin != self.own_origin:
            raise Refused(403, f"the session cookie is accepted only from the Web UI's origins, "
                               f"not {origin or 'a request without Origin'}")
        if request.content_type != "application/json":
            raise Refused(403, "the session cookie is accepted only with Content-Type: "
                               "application/json")
        return await self.session_identity(session_id)

    async def session_identity(self, session_id: str) -> VerifiedIdentity:
        session = self.sessions.get(session_id)
        now = time.time()
        if session is None or now >= session.ends:
            self.sessions.pop(session_id, None)
            raise Refused(401, f"the session has ended: sign in again at "
                               f"{self.settings.codec_public_url}/login")
        if now >= session.access_expires:
            # The provider is asked again, so that someone it no longer signs in (left, locked
            # out) loses the session within one access token's lifetime.
            try:
                if not session.refresh_token:
                    raise oidc.OIDCError("no refresh token")
                tokens = await oidc.refresh(await self.endpoints(), session.refresh_token,
                                            self.settings.codec_oidc_client_id,
                                            self.client_secret)
                identity = await asyncio.to_thread(self.verifier.verify, tokens["access_token"])
            except (oidc.OIDCError, TokenRefused) as err:
                self.sessions.pop(session_id, None)
                log.info("codec session ended", reason=str(err))
                raise Refused(401, f"the session has ended ({err}): sign in again at "
                                   f"{self.settings.codec_public_url}/login") from None
            if identity.ref() != session.identity.ref():
                self.sessions.pop(session_id, None)
                raise Refused(401, "the session's identity changed: sign in again")
            session.identity = identity
            session.access_token = tokens["access_token"]
            session.refresh_token = tokens.get("refresh_token", session.refresh_token)
            session.access_expires = now + float(tokens.get("expires_in", 60))
        return session.identity

    def open_session(self, identity: VerifiedIdentity, tokens: dict) -> str:
        now = time.time()
        if len(self.sessions) >= MAX_SESSIONS:
            for key in [k for k, s in self.sessions.items() if now >= s.ends]:
                del self.sessions[key]
            if len(self.sessions) >= MAX_SESSIONS:  # still full: the oldest goes
                del self.sessions[min(self.sessions, key=lambda k: self.sessions[k].ends)]
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = Session(
            identity, tokens["access_token"], tokens.get("refresh_token"),
            now + float(tokens.get("expires_in", 60)),
            now + self.settings.codec_session_hours * 3600)
        return session_id

    # --- sealing ---------------------------------------------------------------------------

    def seal(self, payload: Payload, identity: VerifiedIdentity) -> tuple[Payload, str | None]:
        """The payload sealed for `identity` when it is a decision (and its name), else as
        it is."""
        if payload.metadata.get("encoding") != b"json/plain":
            return payload, None
        try:
            content = json.loads(payload.data)
        except ValueError:
            return payload, None
        if not isinstance(content, dict) or "decision_id" not in content:
            return payload, None
        # Larger than any decision may be: refused before this (`too_large`); larger than
        # this decision's own cap: refused by seal_decision (413).
        try:
            sealed_content = self.sealer.seal_decision(identity, content)
        except Unsealable as err:
            raise Refused(err.status, str(err)) from None
        sealed = Payload()
        sealed.CopyFrom(payload)
        sealed.data = sealed_json(sealed_content)
        return sealed, (f"{content['decision']} {content['decision_id']} of "
                        f"{content['application_id']}")


SERVER = web.AppKey("server", CodecServer)


def build_app(settings: Settings, verifier: TokenVerifier | None = None) -> web.Application:
    if not settings.payload_encryption_keys:
        raise SystemExit("PAYLOAD_ENCRYPTION_KEYS is not set: the codec server has no keys")
    if not settings.sealing_keys:
        raise SystemExit("SEALING_KEYS is not set: the codec server seals every decision")
    if not settings.oidc_issuer:
        raise SystemExit("OIDC_ISSUER is not set: the codec server serves verified identities "
                         "only")
    sealer = Sealer(sealing_keys(settings.sealing_keys.get_secret_value()),
                    ttl=timedelta(seconds=settings.attestation_ttl_seconds))
    app = web.Application(middlewares=[cors], client_max_size=MAX_REQUEST_BYTES)
    app[SERVER] = CodecServer(
        settings, payload_encryption(settings), sealer,
        verifier or TokenVerifier(settings.oidc_issuer, settings.oidc_audience,
                                  settings.oidc_provider_url))
    for operation in ("encode", "decode"):
        for path in (f"/{operation}", f"/{{prefix:.+}}/{operation}"):
            app.router.add_post(path, apply_codec)
            app.router.add_route("OPTIONS", path, preflight)
    app.router.add_get("/login", login)
    app.router.add_get("/callback", callback)
    app.router.add_route("*", "/logout", logout)
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/healthz", healthz)
    return app


def _refusal(err: Refused) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return web.json_response({"error": str(err)}, status=err.status, headers=headers)


async def apply_codec(request: web.Request) -> web.Response:
    """POST .../encode or .../decode: Payloads in, Payloads out."""
    operation = request.path.rsplit("/", 1)[-1]
    server = request.app[SERVER]
    where = {"operation": operation, "path": request.path,
             "namespace": request.headers.get("X-Namespace"), "remote": request.remote}
    try:
        identity = await server.identity(request)
    except Refused as err:
        log.warning("codec request refused", reason=str(err), **where)
        return _refusal(err)
    where["by"] = identity.shown_as()
    try:
        payloads = list(json_format.Parse(await request.read(), Payloads()).payloads)
        if operation == "encode" and (oversized := too_large(payloads)):
            log.warning("codec request refused: payload too large", reason=oversized, **where)
            return web.json_response({"error": oversized}, status=413)
        if operation == "encode":
            sealed = [server.seal(p, identity) for p in payloads]
            payloads = [p for p, _ in sealed]
            for what in (w for _, w in sealed if w):
                log.info("decision sealed", decision=what, kind=identity.kind,
                         subject=identity.subject, issuer=identity.issuer, **where)
            result = await server.codec.encode(payloads)
        else:
            result = await server.codec.decode(payloads)
    except (json_format.ParseError, UnicodeDecodeError):
        log.warning("codec request refused: not Payloads in JSON", **where)
        return web.json_response(
            {"error": 'the body must be {"payloads": [...]} in protobuf\'s JSON form'},
            status=400)
    except Refused as err:
        log.warning("codec request refused", reason=str(err), **where)
        return _refusal(err)
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


# --- the codec server's own sign-in (for the Web UI) ---------------------------------------------


async def login(request: web.Request) -> web.Response:
    """Send the browser to the identity provider; `?return_to=<a Web UI origin's URL>` comes
    back there after."""
    server = request.app[SERVER]
    return_to = request.query.get("return_to")
    if return_to:
        parts = urlsplit(return_to)
        if f"{parts.scheme}://{parts.netloc}" not in server.origins:
            return web.Response(status=400, text="return_to must be on a CODEC_ALLOWED_ORIGINS "
                                                 "origin")
    try:
        endpoints = await server.endpoints()
    except oidc.OIDCError as err:
        return web.Response(status=502, text=str(err))
    sign_in = oidc.authorization_request(endpoints, server.settings.codec_oidc_client_id,
                                         f"{server.settings.codec_public_url}/callback")
    now = time.time()
    for state in [s for s, pending in server.logins.items()
                  if now - pending.started > LOGIN_SECONDS]:
        del server.logins[state]
    server.logins[sign_in.state] = Login(sign_in, return_to, now)
    response = web.HTTPFound(sign_in.url)
    # Ties the sign-in's return to this browser: a callback carrying someone else's state is
    # refused (login CSRF).
    response.set_cookie(LOGIN_COOKIE, sign_in.state, max_age=LOGIN_SECONDS, httponly=True,
                        samesite="Lax", secure=server.secure_cookies, path="/")
    raise response


async def callback(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    state = request.query.get("state", "")
    pending = server.logins.pop(state, None)
    if request.query.get("error"):
        return web.Response(status=401, text=f"sign-in refused by the identity provider: "
                                             f"{request.query.get('error')}")
    if pending is None or not secrets.compare_digest(state, request.cookies.get(LOGIN_COOKIE, "")):
        return web.Response(status=400, text="this sign-in was not started here, or it expired: "
                                             f"open {server.settings.codec_public_url}/login")
    try:
        tokens = await oidc.redeem_code(await server.endpoints(), pending.request,
                                        request.query.get("code", ""),
                                        server.settings.codec_oidc_client_id, server.client_secret)
        identity = await asyncio.to_thread(server.verifier.verify, tokens["access_token"])
    except (oidc.OIDCError, TokenRefused) as err:
        log.warning("codec sign-in failed", reason=str(err))
        return web.Response(status=401, text=f"sign-in failed: {err}")
    session_id = server.open_session(identity, tokens)
    log.info("codec sign-in", by=identity.shown_as(), kind=identity.kind,
             subject=identity.subject, issuer=identity.issuer)
    response: web.Response
    if pending.return_to:
        response = web.HTTPFound(pending.return_to)
    else:
        response = web.Response(content_type="text/html", text=(
            "<!doctype html><meta charset='utf-8'><title>Signed in</title>"
            f"<p>Signed in to the codec server as <b>{html.escape(identity.shown_as())}</b>. Decisions "
            "you send from the Temporal Web UI are sealed with this identity. You can close this "
            "tab.</p>"))
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Lax",
                        secure=server.secure_cookies, path="/",
                        max_age=int(server.settings.codec_session_hours * 3600))
    response.del_cookie(LOGIN_COOKIE, path="/")
    if isinstance(response, web.HTTPFound):
        raise response
    return response


async def logout(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    server.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
    response = web.Response(text="signed out of the codec server\n")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def whoami(request: web.Request) -> web.Response:
    """Who the codec server takes the caller for (bearer token or session)."""
    server = request.app[SERVER]
    try:
        if request.headers.get("Authorization"):
            identity = await server.identity(request)
        else:
            identity = await server.session_identity(request.cookies.get(SESSION_COOKIE, ""))
    except Refused as err:
        return _refusal(err)
    return web.json_response(identity.model_dump(mode="json"))


# --- CORS -----------------------------------------------------------------------------------------


async def preflight(request: web.Request) -> web.Response:
    """The browser asks before the Web UI's first POST (it sends X-Namespace, and maybe
    Authorization): only the UI's own origins get a yes. Preflights never carry cookies."""
    origin = request.headers.get("Origin")
    if origin not in request.app[SERVER].origins:
        log.warning("codec preflight refused", origin=origin)
        return web.json_response({"error": "origin not allowed"}, status=403)
    return web.Response(status=204, headers={
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": "600",
    })


@web.middleware
async def cors(request: web.Request, handler) -> web.StreamResponse:
    """Every answer to an allowed origin says so, or the browser withholds it from the UI:
    the exact origin (never `*`, which credentials exclude), with credentials."""
    try:
        response = await handler(request)
    except web.HTTPException as raised:  # the sign-in's redirects
        _allow_origin(request, raised)
        raise
    _allow_origin(request, response)
    return response


def _allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin in request.app[SERVER].origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def start_codec_server(settings: Settings, verifier: TokenVerifier | None = None
                             ) -> web.AppRunner:
    """Serves on CODEC_SERVER_HOST:CODEC_SERVER_PORT until `await runner.cleanup()`."""
    runner = web.AppRunner(build_app(settings, verifier), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.codec_server_host, settings.codec_server_port).start()
    log.info("codec server started", host=settings.codec_server_host,
             port=settings.codec_server_port, issuer=settings.oidc_issuer,
             audience=settings.oidc_audience, allowed_origins=settings.codec_allowed_origins)
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
