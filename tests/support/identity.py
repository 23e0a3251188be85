"""The dev identity provider (onboarding.devstack.identity_provider) as tests use it: running in
a thread, with the test staff and any applicant contact a test needs, each with a password;
people sign in by its form, driven over HTTP as a browser would (no browser needed).

Also the forgeries the verifier must refuse: tokens signed by the provider's own key with
wrong claims, or by another key, or with `alg: none` or HS256.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from onboarding.devstack import identity_provider as idp
from onboarding.identity import oidc
from tests.support import data

AUDIENCE = "onboarding"
# A public client for tests, like the reviewer CLI: PKCE, loopback redirect on any port.
TEST_CLIENT = "test-client"
CLI_CLIENT = "onboarding-cli"
CODEC_CLIENT = "codec-server"
CODEC_SECRET = secrets.token_urlsafe(16)
SERVICE = "developer-portal"
SERVICE_SECRET = secrets.token_urlsafe(16)
NAMES = {data.REVIEWER: "Rita Reviewer", data.SALES: "Sam Sales", data.PLATFORM: "Pat Platform",
         data.APPROVER: "Ann Approver", data.MANAGER: "Max Manager",
         data.REVIEWER_AND_APPROVER: "Dana Dual"}


def clients(codec_url: str = "http://localhost:8081") -> list[idp.DevClient]:
    return [
        idp.DevClient(TEST_CLIENT, redirect_uris=("http://127.0.0.1/callback",)),
        idp.DevClient(CLI_CLIENT, redirect_uris=("http://127.0.0.1/callback",)),
        idp.DevClient(CODEC_CLIENT, CODEC_SECRET, redirect_uris=(f"{codec_url}/callback",)),
        idp.DevClient(SERVICE, SERVICE_SECRET, grant_types=("client_credentials",)),
    ]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def submit_sign_in_form(url: str, email: str, password: str) -> str:
    """What a person does in the browser at the provider's sign-in page (`url`): the page
    shows the form, the form is sent. Returns where the provider redirects the browser."""
    with urllib.request.urlopen(url, timeout=10) as page:
        assert b"name='password'" in page.read(), "no sign-in form"
    form = urllib.parse.urlencode({"username": email, "password": password}).encode()
    try:
        _opener.open(urllib.request.Request(url, data=form), timeout=10)
    except urllib.error.HTTPError as answer:
        if answer.code == 302:
            return answer.headers["Location"]
        raise AssertionError(f"sign-in answered {answer.code}: {answer.read()[:300]!r}") from None
    raise AssertionError("the sign-in did not redirect")


class TestIdentityProvider:
    """The running provider and what tests do with it."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, running: idp.RunningProvider) -> None:
        self.running = running
        self.provider = running.provider

    @property
    def issuer(self) -> str:
        return self.running.issuer

    def register_codec_server(self, url: str) -> None:
        """The codec server's sign-in returns to `url`/callback (a test's own port)."""
        self.provider.clients[:] = [c for c in self.provider.clients
                                    if c.client_id != CODEC_CLIENT]
        self.provider.clients.append(idp.DevClient(CODEC_CLIENT, CODEC_SECRET,
                                                   redirect_uris=(f"{url}/callback",)))

    def person(self, email: str, name: str | None = None) -> idp.DevUser:
        """The provider's user for `email`, added (with a fresh password) if it has none."""
        for user in self.provider.users:
            if user.email == email:
                return user
        user = idp.DevUser(email, secrets.token_urlsafe(12), name or email.split("@")[0])
        self.provider.users.append(user)
        return user

    def subject(self, email: str) -> str:
        return self.person(email).subject

    async def sign_in(self, email: str, client_id: str = TEST_CLIENT) -> dict[str, Any]:
        """`email`'s tokens, by the authorization code flow with PKCE and the sign-in form."""
        user = self.person(email)
        endpoints = await oidc.discover(self.issuer)
        request = oidc.authorization_request(endpoints, client_id,
                                             "http://127.0.0.1:9/callback")
        location = await asyncio.to_thread(submit_sign_in_form, request.url, user.email,
                                           user.password)
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [request.state]
        return await oidc.redeem_code(endpoints, request, query["code"][0], client_id)

    async def access_token(self, email: str) -> str:
        return (await self.sign_in(email))["access_token"]

    async def service_token(self, client_id: str = SERVICE,
                            secret: str = SERVICE_SECRET) -> str:
        endpoints = await oidc.discover(self.issuer)
        return (await oidc.client_credentials(endpoints, client_id, secret))["access_token"]

    # --- forgeries -----------------------------------------------------------------------------

    def private_pem(self) -> bytes:
        return self.provider.key.as_pem(private=True)

    def public_pem(self) -> bytes:
        return self.provider.key.as_pem(private=False)

    def claims(self, email: str = data.REVIEWER, **changes: Any) -> dict[str, Any]:
        """A person's access token claims as the provider issues them."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": self.subject(email),
                  "client_id": TEST_CLIENT, "iat": now, "exp": now + 300,
                  "email": email, "email_verified": True, "name": "Someone",
                  "jti": secrets.token_hex(8), "scope": "openid profile email"}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, claims: dict[str, Any], *, key: Any = None, algorithm: str = "RS256",
             kid: str | None = None) -> str:
        """A token signed with the provider's own key (or `key`), under its `kid`."""
        return jwt.encode(claims, key if key is not None else self.private_pem(),
                          algorithm=algorithm, headers={"kid": kid or self.provider.key.kid})


def another_rsa_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """`alg: none`: a header and claims, and no signature."""
    part = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{part(claims)}."


def start(codec_url: str = "http://localhost:8081", **options: Any) -> TestIdentityProvider:
    users = [idp.DevUser(email, secrets.token_urlsafe(12), NAMES.get(email, email))
             for email in dict.fromkeys(e for e, _ in data.STAFF)]
    return TestIdentityProvider(idp.start(users, clients(codec_url), audience=AUDIENCE,
                                          **options))
