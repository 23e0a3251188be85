"""`openapi-onboarding login`: the reviewer signs in with the operator's identity provider, and
every decision the CLI sends after is sealed for them by the codec server.

Authorization code + PKCE for a public client (OIDC_CLI_CLIENT_ID, no secret), redirected to a
loopback address (RFC 8252 §7.3): `http://127.0.0.1:<a free port>/callback`, served here for
the one request that brings the code back. The tokens are kept in CLI_TOKEN_FILE (default
`openapi-onboarding/tokens.json` in the user's config directory), readable by the user alone
(0600); the access token is refreshed with the refresh token when it has expired. Several
people may be signed in at once in one terminal (the dev stack's walkthrough plays them all):
`--by` says whose sign-in a decision uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import webbrowser
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from onboarding.core.config import Settings
from onboarding.identity import oidc

LOGIN_TIMEOUT = 300  # seconds to finish signing in, in the browser
EARLY = 30  # seconds before its expiry an access token counts as expired


class NotSignedIn(Exception):
    """Why there is no usable token; the message says what to run."""


def token_file(settings: Settings) -> Path:
    if settings.cli_token_file:
        return settings.cli_token_file
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "openapi-onboarding" / "tokens.json"


def provider_url(settings: Settings) -> str:
    url = settings.oidc_provider_url or settings.oidc_issuer
    if not url:
        raise NotSignedIn("OIDC_ISSUER is not set: the CLI does not know the identity provider "
                          "(make up writes it into .data/dev.env)")
    return url


def _read(settings: Settings) -> dict[str, Any]:
    try:
        record = json.loads(token_file(settings).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise NotSignedIn(f"{token_file(settings)} is unreadable: run `openapi-onboarding "
                          "login`") from None
    if record.get("issuer") != settings.oidc_issuer:
        return {}  # signed in with another provider: those tokens are of no use here
    return record


def _write(settings: Settings, record: dict[str, Any]) -> Path:
    path = token_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.chmod(path, 0o600)
    return path


def who(token: str) -> str:
    """Whom a token is for, as the CLI names them: the e-mail address it carries, else its
    subject."""
    claims = claims_of(token)
    return str(claims.get("email") or claims.get("sub"))


def save(settings: Settings, tokens: dict[str, Any]) -> str:
    """Keep a sign-in's tokens, beside the others' (one terminal may serve several people in
    the dev stack's walkthrough; a reviewer normally holds one). Returns whom they are for."""
    record = _read(settings) or {"issuer": settings.oidc_issuer, "identities": {}}
    me = who(tokens["access_token"])
    previous = record["identities"].get(me, {})
    record["identities"][me] = {
        "access_token": tokens["access_token"],
        "refresh_token": tokens.get("refresh_token") or previous.get("refresh_token"),
        "expires_at": time.time() + float(tokens.get("expires_in", 60))}
    _write(settings, record)
    return me


def forget(settings: Settings, person: str | None = None) -> list[str]:
    """Forget `person`'s tokens, or everyone's; returns whose were forgotten."""
    record = _read(settings)
    identities = record.get("identities", {})
    gone = [p for p in identities if person is None or p.lower() == person.lower()]
    for p in gone:
        del identities[p]
    if identities:
        _write(settings, record)
    elif token_file(settings).exists():
        token_file(settings).unlink()
    return gone


def signed_in(settings: Settings) -> list[str]:
    return list(_read(settings).get("identities", {}))


async def sign_in(settings: Settings, open_url=webbrowser.open, say=print) -> dict[str, Any]:
    """Sign in through the browser; returns the tokens (and keeps them)."""
    endpoints = await oidc.discover(provider_url(settings))
    arrived: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        if not arrived.done():
            arrived.set_result(dict(request.query))
        return web.Response(content_type="text/html", text=(
            "<!doctype html><meta charset='utf-8'><title>openapi-onboarding</title>"
            "<p>You can close this tab and return to the terminal.</p>"))

    app = web.Application()
    app.router.add_get("/callback", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 (aiohttp has no accessor)
    try:
        request = oidc.authorization_request(endpoints, settings.oidc_cli_client_id,
                                             f"http://127.0.0.1:{port}/callback")
        say(f"Sign in with your browser at:\n  {request.url}")
        await asyncio.to_thread(open_url, request.url)
        async with asyncio.timeout(LOGIN_TIMEOUT):
            answer = await arrived
    except TimeoutError:
        raise NotSignedIn(f"no sign-in within {LOGIN_TIMEOUT} s") from None
    finally:
        await runner.cleanup()
    if answer.get("error"):
        reason = answer.get("error_description") or answer["error"]
        raise NotSignedIn(f"the identity provider refused: {reason}")
    if answer.get("state") != request.state:
        raise NotSignedIn("the sign-in came back with another state: start again")
    tokens = await oidc.redeem_code(endpoints, request, answer.get("code", ""),
                                    settings.oidc_cli_client_id)
    save(settings, tokens)
    return tokens


async def access_token(settings: Settings, person: str | None = None) -> tuple[str, str]:
    """The access token of `person` (or of the one person signed in), refreshed when it has
    expired, and whom it is for."""
    identities = _read(settings).get("identities", {})
    if person is None:
        if not identities:
            raise NotSignedIn("not signed in: run `openapi-onboarding login`")
        if len(identities) > 1:
            raise NotSignedIn(f"signed in as {', '.join(identities)}: say which with --by")
        person = next(iter(identities))
    me = next((p for p in identities if p.lower() == person.lower()), None)
    if me is None:
        raise NotSignedIn(f"not signed in as {person}: run `openapi-onboarding login` and sign "
                          f"in as them" + (f" (signed in: {', '.join(identities)})"
                                           if identities else ""))
    held = identities[me]
    if time.time() < float(held.get("expires_at", 0)) - EARLY:
        return held["access_token"], me
    if not held.get("refresh_token"):
        raise NotSignedIn(f"the sign-in of {me} has expired: run `openapi-onboarding login`")
    try:
        tokens = await oidc.refresh(await oidc.discover(provider_url(settings)),
                                    held["refresh_token"], settings.oidc_cli_client_id)
    except oidc.OIDCError as err:
        raise NotSignedIn(f"the sign-in of {me} has expired ({err}): run "
                          "`openapi-onboarding login`") from None
    save(settings, tokens)
    return tokens["access_token"], me


def claims_of(token: str) -> dict[str, Any]:
    """What our own access token says (unverified: for display; the codec server verifies)."""
    return jwt.decode(token, options={"verify_signature": False})
