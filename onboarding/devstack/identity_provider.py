"""The dev stack's OpenID Connect provider: a thin Flask app on Authlib's authorization server.

For `make up` and the tests only; in a cluster the operator's own provider (docker-compose.yml:
Keycloak) takes its place. Authlib does the protocol; this file holds what Authlib leaves to
its user (users, clients, codes and refresh tokens in memory, the sign-in form):

- discovery (`/.well-known/openid-configuration`) and the keys (`/jwks`, one RSA key made per
  start, its `kid` in every token's header);
- authorization code with PKCE (S256; required of public clients), the sign-in form asking
  for a username (the e-mail address) and a password; refresh tokens; client credentials;
- access tokens as JWTs (RFC 9068) for the platform's audience, carrying the person's verified
  e-mail and name; a client-credentials token's subject is the client (RFC 9068 §2.2), which is
  how onboarding.identity.tokens tells a service; ID tokens for the client that signed in.

Why not oidc-provider-mock from PyPI: its 0.4 line needs Python ≥ 3.12 (the platform runs on
3.11); 0.3.4 refuses public clients and signs ID tokens without a `kid`; neither issues JWT
access tokens (theirs are opaque: nothing for an audience to verify) nor client credentials;
and its sign-in lets anyone type any subject, i.e. impersonate by design. Here a password is
needed even in development, so a refused impersonation can be shown on `make up` too.
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import flask
import werkzeug.serving
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core import OpenIDCode as _OpenIDCode
from joserfc.jwk import KeySet, RSAKey

from onboarding.core.logs import get_logger

log = get_logger("identity_provider")

SCOPES = "openid profile email"
ACCESS_TOKEN_SECONDS = 600
REFRESH_TOKEN_SECONDS = 12 * 3600
CODE_SECONDS = 120
LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "localhost"}


@dataclass(frozen=True)
class DevUser:
    """A person who can sign in: by e-mail address and password."""

    email: str
    password: str
    name: str
    # Opaque and stable, as a real provider's: derived from the e-mail, so that the dev roster
    # can be enrolled before anyone signs in, but never equal to it (identity is not e-mail).
    subject: str = ""

    def __post_init__(self) -> None:
        if not self.subject:
            object.__setattr__(self, "subject", subject_for(self.email))

    def get_user_id(self) -> str:
        return self.subject

    def claims(self) -> dict[str, object]:
        return {"email": self.email, "email_verified": True, "name": self.name,
                "preferred_username": self.email}


def subject_for(email: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"onboarding-dev-idp:{email.lower()}"))


@dataclass(frozen=True)
class DevClient(ClientMixin):
    """An OAuth2 client. Without a secret it is public (the reviewer CLI: PKCE, loopback
    redirect on any port, RFC 8252 §7.3)."""

    client_id: str
    secret: str | None = None
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES.split())

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if redirect_uri in self.redirect_uris:
            return True
        asked = urlsplit(redirect_uri)
        for registered in map(urlsplit, self.redirect_uris):
            if (registered.hostname in LOOPBACK_HOSTS and registered.port is None
                    and asked.scheme == "http" and asked.hostname == registered.hostname
                    and asked.path == registered.path):
                return True
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class _RefreshToken(TokenMixin):
    client_id: str
    user_id: str
    scope: str
    refresh_token: str
    expires_at: float

    def check_client(self, client: DevClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() > self.expires_at

    def is_revoked(self) -> bool:
        return False


@dataclass
class Provider:
    """The provider's state: who exists, and what is outstanding."""

    issuer: str
    audience: str
    users: list[DevUser]
    clients: list[DevClient]
    access_token_seconds: int = ACCESS_TOKEN_SECONDS
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(
        2048, parameters={"kid": f"dev-{secrets.token_hex(4)}", "alg": "RS256", "use": "sig"},
        private=True))
    codes: dict[str, _Code] = field(default_factory=dict)
    refresh_tokens: dict[str, _RefreshToken] = field(default_factory=dict)

    def user(self, subject: str | None) -> DevUser | None:
        return next((u for u in self.users if u.subject == subject), None)

    def signing_in(self, email: str, password: str) -> DevUser | None:
        user = next((u for u in self.users if u.email.lower() == email.strip().lower()), None)
        if user and secrets.compare_digest(password.encode(), user.password.encode()):
            return user
        return None

    def client(self, client_id: str) -> DevClient | None:
        return next((c for c in self.clients if c.client_id == client_id), None)


def create_app(provider: Provider) -> flask.Flask:
    app = flask.Flask(__name__)
    jwks = KeySet([provider.key])
    issuer = provider.issuer

    class AccessTokens(JWTBearerTokenGenerator):
        def get_jwks(self):
            return jwks

        def get_audiences(self, client, user, scope):
            return provider.audience

        def get_extra_claims(self, client, grant_type, user, scope):
            return user.claims() if user is not None else {}

    tokens = AccessTokens(
        issuer=issuer, alg="RS256",
        refresh_token_generator=lambda client, grant_type, user, scope: (
            secrets.token_urlsafe(32) if user is not None else None),
        expires_generator=lambda client, grant_type: provider.access_token_seconds)

    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

        def save_authorization_code(self, code, request):
            payload = request.payload
            provider.codes[code] = _Code(
                code, request.client.client_id, payload.redirect_uri, payload.scope,
                request.user.subject, payload.data.get("nonce"),
                payload.data.get("code_challenge"), payload.data.get("code_challenge_method"),
                int(time.time()), time.time() + CODE_SECONDS)

        def query_authorization_code(self, code, client):
            found = provider.codes.get(code)
            if found and found.client_id == client.client_id and time.time() < found.expires_at:
                return found
            return None

        def delete_authorization_code(self, authorization_code):
            provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code):
            return provider.user(authorization_code.user_id)

    class RefreshTokenGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token):
            found = provider.refresh_tokens.get(refresh_token)
            return found if found and not found.is_expired() else None

        def authenticate_user(self, refresh_token):
            return provider.user(refresh_token.user_id)

        def revoke_old_credential(self, refresh_token):
            provider.refresh_tokens.pop(refresh_token.refresh_token, None)

    class OpenIDCode(_OpenIDCode):
        def resolve_client_private_key(self, client):
            return provider.key

        def get_encode_header(self, client):
            return {"alg": "RS256", "kid": provider.key.kid, "typ": "JWT"}

        def get_client_claims(self, client):
            return {"iss": issuer, "aud": [client.client_id],
                    "exp": int(time.time()) + provider.access_token_seconds}

        def exists_nonce(self, nonce, request):
            return False

        def generate_user_info(self, user, scope):
            return UserInfo(sub=user.subject, **user.claims())

    def save_token(token, request):
        if token.get("refresh_token") and request.user is not None:
            provider.refresh_tokens[token["refresh_token"]] = _RefreshToken(
                request.client.client_id, request.user.subject, token.get("scope", ""),
                token["refresh_token"], time.time() + REFRESH_TOKEN_SECONDS)

    server = AuthorizationServer(app, query_client=provider.client, save_token=save_token)
    server.register_token_generator("default", tokens)
    server.register_grant(AuthorizationCodeGrant,
                          [CodeChallenge(required=True), OpenIDCode(require_nonce=False)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(grants.ClientCredentialsGrant)

    @app.get("/.well-known/openid-configuration")
    def discovery():
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post", "none"],
            "scopes_supported": SCOPES.split(),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "email_verified",
                                 "name", "preferred_username"],
        }

    @app.get("/jwks")
    def keys():
        return jwks.as_dict(private=False)

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize():
        try:
            grant = server.get_consent_grant(end_user=None)
        except Exception as err:  # noqa: BLE001 (Authlib's errors: shown, not raised)
            return _page(f"<p>This sign-in request is not valid: {html.escape(str(err))}</p>"), 400
        client = html.escape(grant.client.client_id)
        if flask.request.method == "GET":
            return _form(client)
        user = provider.signing_in(flask.request.form.get("username", ""),
                                   flask.request.form.get("password", ""))
        if user is None:
            log.warning("dev sign-in refused", username=flask.request.form.get("username"))
            return _form(client, "Unknown username or wrong password."), 401
        log.info("dev sign-in", email=user.email, client=grant.client.client_id)
        return server.create_authorization_response(grant_user=user, grant=grant)

    @app.post("/token")
    def token():
        return server.create_token_response()

    return app


def _page(body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Sign in (development)"
            f"</title></head><body>{body}</body></html>")


def _form(client: str, error: str = "") -> str:
    problem = f"<p role='alert'>{html.escape(error)}</p>" if error else ""
    return _page(
        f"<h1>Sign in</h1><p>Development identity provider, for <b>{client}</b>.</p>{problem}"
        "<form method='post'>"
        "<label>E-mail <input name='username' autocomplete='username' required></label><br>"
        "<label>Password <input name='password' type='password' "
        "autocomplete='current-password' required></label><br>"
        "<button type='submit'>Sign in</button></form>")


class _QuietHandler(werkzeug.serving.WSGIRequestHandler):
    """Sign-ins are logged by the app (who, for which client); not every request."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class RunningProvider:
    """The provider served by Werkzeug in a daemon thread."""

    def __init__(self, provider: Provider, server: werkzeug.serving.BaseWSGIServer,
                 thread: threading.Thread) -> None:
        self.provider = provider
        self._server = server
        self._thread = thread

    @property
    def issuer(self) -> str:
        return self.provider.issuer

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()


def start(users: list[DevUser], clients: list[DevClient], *, audience: str,
          host: str = "127.0.0.1", port: int = 0, public_host: str = "localhost",
          access_token_seconds: int = ACCESS_TOKEN_SECONDS) -> RunningProvider:
    """Serve on host:port (0: a free one). The issuer is `http://<public_host>:<port>`: the
    address browsers and every component use, so that tokens carry the same `iss` for all."""
    # Authlib refuses plain http unless told; this provider is for localhost only.
    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    server = werkzeug.serving.make_server(host, port, flask.Flask("placeholder"), threaded=True,
                                         request_handler=_QuietHandler)
    provider = Provider(issuer=f"http://{public_host}:{server.server_port}", audience=audience,
                        users=users, clients=clients, access_token_seconds=access_token_seconds)
    server.app = create_app(provider)
    thread = threading.Thread(target=server.serve_forever, name="identity-provider", daemon=True)
    thread.start()
    log.info("dev identity provider started", issuer=provider.issuer, users=len(users),
             clients=[c.client_id for c in clients])
    return RunningProvider(provider, server, thread)


@contextlib.contextmanager
def running(users: list[DevUser], clients: list[DevClient], **options) -> Iterator[RunningProvider]:
    provider = start(users, clients, **options)
    try:
        yield provider
    finally:
        provider.stop()
