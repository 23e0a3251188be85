"""The client side of OIDC, over aiohttp: what the codec server's sign-in, the reviewer CLI's
`login` and programs (client credentials) need, and nothing more.

The provider is found by its discovery document, read from the provider URL (which may be an
address inside a network, like compose's `http://keycloak:8080/realms/onboarding`): the
browser is sent to its `authorization_endpoint`, and tokens come from its `token_endpoint`.
Authorization code requests always carry PKCE (S256, Authlib's helper) and a random `state`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge

TIMEOUT = aiohttp.ClientTimeout(total=15)
SCOPE = "openid profile email"


class OIDCError(Exception):
    """The provider refused, or could not be reached; the message says which, and why."""


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str

    @classmethod
    def of(cls, discovery: dict[str, Any]) -> Endpoints:
        return cls(discovery["issuer"], discovery["authorization_endpoint"],
                   discovery["token_endpoint"])


async def discover(provider_url: str) -> Endpoints:
    url = f"{provider_url.rstrip('/')}/.well-known/openid-configuration"
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.get(url) as response:
            if response.status != 200:
                raise OIDCError(f"the identity provider's discovery document at {url} answered "
                                f"{response.status}")
            return Endpoints.of(await response.json(content_type=None))
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as err:
        raise OIDCError(f"cannot read the identity provider's discovery document at {url}: "
                        f"{err!r}") from None


@dataclass(frozen=True)
class AuthorizationRequest:
    """One sign-in under way: where to send the browser, and what to check when it returns."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str


def authorization_request(endpoints: Endpoints, client_id: str, redirect_uri: str,
                          scope: str = SCOPE) -> AuthorizationRequest:
    state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "scope": scope, "state": state, "nonce": secrets.token_urlsafe(16),
        "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
    })
    separator = "&" if "?" in endpoints.authorization_endpoint else "?"
    return AuthorizationRequest(f"{endpoints.authorization_endpoint}{separator}{query}", state,
                                verifier, redirect_uri)


async def _token_request(endpoints: Endpoints, form: dict[str, str], client_id: str,
                         client_secret: str | None) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if client_secret is None:
        form = {**form, "client_id": client_id}  # a public client names itself
    else:  # client_secret_basic, each part form-encoded first (RFC 6749 §2.3.1)
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
        headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, \
                http.post(endpoints.token_endpoint, data=form, headers=headers) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise OIDCError(f"the identity provider's token endpoint {endpoints.token_endpoint} "
                        f"cannot be reached: {err!r}") from None
    if response.status != 200 or "access_token" not in body:
        reason = body.get("error_description") or body.get("error") if isinstance(body, dict) \
            else None
        raise OIDCError(f"the identity provider refused ({response.status}): {reason or body}")
    return body


async def redeem_code(endpoints: Endpoints, request: AuthorizationRequest, code: str,
                      client_id: str, client_secret: str | None = None) -> dict[str, Any]:
    """The tokens for the code the browser brought back (authorization code + PKCE)."""
    return await _token_request(endpoints, {
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": request.redirect_uri, "code_verifier": request.code_verifier,
    }, client_id, client_secret)


async def refresh(endpoints: Endpoints, refresh_token: str, client_id: str,
                  client_secret: str | None = None) -> dict[str, Any]:
    return await _token_request(endpoints, {"grant_type": "refresh_token",
                                            "refresh_token": refresh_token},
                                client_id, client_secret)


async def client_credentials(endpoints: Endpoints, client_id: str, client_secret: str,
                             scope: str | None = None) -> dict[str, Any]:
    """A service's own token (OAuth2 client credentials)."""
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    return await _token_request(endpoints, form, client_id, client_secret)
