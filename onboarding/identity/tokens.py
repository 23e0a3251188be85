"""OIDC access tokens verified into a `VerifiedIdentity` (PyJWT, keys from the provider's JWKS).

The provider is configured by its issuer (OIDC_ISSUER, what tokens carry in `iss`) and, where
this process reaches it at another address (compose: `http://keycloak:8080/...` inside the
network, `http://localhost:8180/...` in the browser), OIDC_PROVIDER_URL: the discovery document
is read from there once, and its `jwks_uri` gives the keys (PyJWKClient: cached, fetched again
for a key id it does not know, so the provider can rotate its keys).

A token is accepted only when all of these hold:
- signed with an algorithm of ALGORITHMS (RS256, ES256, PS256, EdDSA): never `none`, never an
  HMAC (HS*), whose "key" would be the public key anyone can read;
- by the key of the JWKS its `kid` names, whose own algorithm is the token's (PyJWT refuses an
  RS256 key used for PS256 or ES256);
- `iss` is the issuer, `aud` holds the audience (OIDC_AUDIENCE), `exp`, `iat` and `sub` are
  present, `exp`/`nbf`/`iat` hold with LEEWAY for clocks a little apart;
- it is not an ID or refresh token (Keycloak's `typ` claim), which are not for us.

Person or service (`kind_of`): a token is a service's when no human is its subject:
- RFC 9068: a client-credentials token's `sub` is the client itself (`sub == client_id`;
  the dev identity provider, and most providers issuing JWT access tokens);
- Keycloak: client credentials sign in the client's service-account user, whose username is
  `service-account-<client id>` (`preferred_username`), with the client in `client_id`/`azp`.
Everything else is a person. A service never counts as staff (onboarding.identity.decisions).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import jwt

from onboarding.identity.models import VerifiedIdentity

ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
LEEWAY = timedelta(seconds=30)
MAX_SUBJECT = 255  # characters of `sub`, ASCII (OpenID Connect Core §2)
NOT_ACCESS_TOKENS = {"ID", "Refresh", "Logout"}  # Keycloak's `typ` claim
SERVICE_ACCOUNT_PREFIX = "service-account-"  # Keycloak's service-account usernames


class TokenRefused(Exception):
    """Why a token is not accepted; the message is safe to show to its sender (it never
    repeats the token)."""


def kind_of(claims: Mapping[str, Any]) -> str:
    """"service" when no human is the token's subject (see the module's docstring), else
    "person"."""
    client = claims.get("client_id") or claims.get("azp")
    if client and claims.get("sub") == client:
        return "service"
    if client and claims.get("preferred_username") == f"{SERVICE_ACCOUNT_PREFIX}{client}":
        return "service"
    return "person"


def identity_from(claims: Mapping[str, Any]) -> VerifiedIdentity:
    """The identity verified claims describe. The e-mail counts only when the provider says it
    verified it."""
    email = claims.get("email") if claims.get("email_verified") is True else None
    client = claims.get("client_id") or claims.get("azp")
    return VerifiedIdentity(
        issuer=str(claims["iss"]), subject=str(claims["sub"]), kind=kind_of(claims),
        email=str(email).lower() if email else None,
        name=str(claims["name"]) if claims.get("name") else None,
        client_id=str(client) if client else None,
    )


def fetch_json(url: str, timeout: float = 10) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (configured URL)
        return json.load(response)


class TokenVerifier:
    """Verifies the access tokens of one provider for one audience. Blocking (the JWKS is
    fetched with urllib when needed): call it from a thread in async code."""

    def __init__(self, issuer: str, audience: str, provider_url: str | None = None, *,
                 leeway: timedelta = LEEWAY) -> None:
        self.issuer = issuer
        self.audience = audience
        self.provider_url = (provider_url or issuer).rstrip("/")
        self.leeway = leeway
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def discovery(self) -> dict[str, Any]:
        return fetch_json(f"{self.provider_url}/.well-known/openid-configuration")

    def _keys(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks is None:
                try:
                    jwks_uri = self.discovery()["jwks_uri"]
                except Exception as err:
                    raise TokenRefused(
                        f"the identity provider at {self.provider_url} cannot be read: "
                        f"{err}") from None
                self._jwks = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=300,
                                             timeout=10)
            return self._jwks

    def verify(self, token: str) -> VerifiedIdentity:
        """The identity `token` proves, or TokenRefused saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("not a JWT access token") from None
        if header.get("alg") not in ALGORITHMS:
            raise TokenRefused(f"token algorithm {header.get('alg')!r} is not allowed "
                               f"(only {', '.join(ALGORITHMS)})")
        try:
            key = self._keys().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientError as err:
            raise TokenRefused(f"no key of the identity provider matches the token: {err}") \
                from None
        try:
            claims = jwt.decode(
                token, key, algorithms=list(ALGORITHMS), audience=self.audience,
                issuer=self.issuer, leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(f"token is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"token is not issued by {self.issuer}") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("token signature does not verify") from None
        except jwt.PyJWTError as err:
            raise TokenRefused(f"token refused: {err}") from None
        if claims.get("typ") in NOT_ACCESS_TOKENS:
            raise TokenRefused(f"a {claims['typ']} token is not an access token")
        # OpenID Connect Core §2 bounds `sub`; the records name people by it, and what a run
        # carries to the next (onboarding/domain/state.py) is sized on that bound.
        subject = claims["sub"]
        if not isinstance(subject, str) or len(subject) > MAX_SUBJECT or not subject.isascii():
            raise TokenRefused(f"token subject is not at most {MAX_SUBJECT} ASCII characters")
        return identity_from(claims)
