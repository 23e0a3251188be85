"""Configuration, read once from the environment (and an optional `.env` file).

Every variable is documented in the README's configuration table; `tests/test_compose.py`
checks that docker-compose.yml only sets variables defined here.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from onboarding.domain.models import (
    MAX_ESCALATE_AFTER_DAYS,
    MAX_LAPSE_AFTER_DAYS,
    MAX_PRODUCTION_KEY_DAYS,
    MAX_REMIND_AFTER_DAYS,
    MAX_SANDBOX_KEY_DAYS,
)


class Settings(BaseSettings):
    # `.data/dev.env` is written by `make up` (the embedded database's URL, the payload keys)
    # for other terminals.
    # Errors name the variable and the rule, never echo its value: it may be a secret.
    model_config = SettingsConfigDict(env_file=(".env", ".data/dev.env"), extra="ignore",
                                      hide_input_in_errors=True)

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "openapi-onboarding"
    temporal_tls: bool = False
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    temporal_tls_server_ca: Path | None = None
    temporal_api_key: SecretStr | None = None

    # PostgreSQL: when unset, `make up` and the tests start an embedded server.
    database_url: SecretStr | None = None
    db_pool_min_size: int = Field(2, ge=1)
    db_pool_max_size: int = Field(10, ge=1)

    # Observability
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    metrics_port: int = Field(9464, ge=0, le=65535, description="0 disables the endpoint")

    # Worker
    worker_graceful_shutdown_seconds: int = Field(30, ge=0)
    # How often the key-reconciliation schedule revokes the keys of closed processes
    # (onboarding/temporal/schedules.py); the interval of a schedule created from now on.
    key_reconciliation_minutes: int = Field(15, ge=1, le=24 * 60)

    # Key verification endpoint (`python -m onboarding.services.key_verification`), asked by
    # the API gateway. It has no login of its own: bind it where only the gateway reaches it
    # (compose: 0.0.0.0 on the internal network, not published).
    gateway_bind: str = "127.0.0.1"
    gateway_port: int = Field(8090, ge=1, le=65535)
    # It answers from memory, told of every change by PostgreSQL (onboarding/services/
    # key_cache.py); no answer is older than this, whatever happens to the notifications
    # (0: every answer from the database). At most this many known keys' answers, and apart,
    # unknown keys' (a flood of random keys pushes out only those).
    key_cache_max_age_seconds: float = Field(10, ge=0, le=300)
    key_cache_max_keys: int = Field(20_000, ge=1)
    key_cache_max_unknown: int = Field(10_000, ge=0)

    # API keys: a key is derived from this secret and the issuance id, so that a retried
    # issuance re-derives the same key instead of issuing a second one. Only its hash is stored.
    key_issuance_secret: SecretStr | None = Field(None, min_length=32)
    sandbox_key_valid_days: int = Field(180, ge=1, le=MAX_SANDBOX_KEY_DAYS)
    production_key_valid_days: int = Field(730, ge=1, le=MAX_PRODUCTION_KEY_DAYS)

    # Mail: the outbox relay delivers notices (a key's delivery too) over SMTP when SMTP_HOST
    # is set; otherwise they wait in the outbox until it is.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30
    mail_from: str = "openapi-platform@localhost"

    # Default deadlines given to new applications (see README: deadlines), within the bounds
    # every application is held to (onboarding/domain/models.py).
    remind_after_days: int = Field(7, ge=1, le=MAX_REMIND_AFTER_DAYS)
    escalate_after_days: int = Field(21, ge=1, le=MAX_ESCALATE_AFTER_DAYS)
    lapse_after_days: int = Field(90, ge=1, le=MAX_LAPSE_AFTER_DAYS)

    # Payload encryption (onboarding.temporal.codec): organisation and contact data travel in
    # workflow inputs, decisions and results; Temporal stores them encrypted with AES-256-GCM.
    # `id:base64key,id:base64key`: the current key (PAYLOAD_ENCRYPTION_KEY_ID, else the first)
    # encrypts, every key listed decrypts, so a key is rotated without losing older histories.
    payload_encryption_keys: SecretStr | None = None
    payload_encryption_key_id: str | None = None
    # The codec server (`python -m onboarding.services.codec_server`) decrypts for the Web UI
    # and the CLI.
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(8081, ge=1, le=65535)
    # Comma-separated: the Web UI calls the codec server from the browser, from these origins.
    codec_allowed_origins: str = "http://localhost:8233"
    # The codec server's address in the browser (its sign-in's callback is <this>/callback), and
    # its own OIDC client (confidential) for that sign-in; the session it opens lasts this long
    # while the provider keeps refreshing its token.
    codec_public_url: str = "http://localhost:8081"
    codec_oidc_client_id: str = "codec-server"
    codec_oidc_client_secret: SecretStr | None = None
    codec_session_hours: float = Field(8, gt=0, le=24)
    # Without keys (a reviewer's laptop), clients encrypt and decrypt through the codec server;
    # the same variable the `temporal` CLI reads.
    temporal_codec_endpoint: str | None = None

    # Identity (onboarding.identity, docs/identity.md): the operator's OIDC provider. Tokens
    # carry OIDC_ISSUER in `iss` and OIDC_AUDIENCE in `aud`; OIDC_PROVIDER_URL is where this
    # process reads the provider's discovery document when that is another address (compose:
    # inside the network), else the issuer.
    oidc_issuer: str | None = None
    oidc_provider_url: str | None = None
    oidc_audience: str = "onboarding"
    # The reviewer CLI's client (public: PKCE, loopback redirect), and where `login` keeps its
    # tokens (0600); default: openapi-onboarding/tokens.json in the user's config directory.
    oidc_cli_client_id: str = "onboarding-cli"
    cli_token_file: Path | None = None
    # Sealed decisions (onboarding.identity.attestation): `id:base64`, comma-separated.
    # SEALING_KEYS: Ed25519 private keys, for sealing components only (the codec server); the
    # first seals, all verify. SEALING_VERIFICATION_KEYS: the public keys, for the workers.
    sealing_keys: SecretStr | None = None
    sealing_verification_keys: str | None = None
    # How long a seal counts: from sealing to the decision's arrival in the workflow.
    attestation_ttl_seconds: int = Field(900, ge=30, le=86400)

    # Dev stack (`make up`)
    data_dir: Path = Path(".data")
    temporal_ui_port: int = 8233
    dev_mail_port: int = Field(1025, ge=1, le=65535, description="the dev stack's SMTP sink")
    dev_identity_provider_port: int = Field(8180, ge=1, le=65535)

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if bool(self.temporal_tls_client_cert) != bool(self.temporal_tls_client_key):
            raise ValueError("TEMPORAL_TLS_CLIENT_CERT and TEMPORAL_TLS_CLIENT_KEY go together")
        return self

    @field_validator("payload_encryption_key_id", "oidc_issuer", "oidc_provider_url",
                     "sealing_keys", "sealing_verification_keys", "codec_oidc_client_secret",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None  # docker-compose passes an unset variable on as ""

    @model_validator(mode="after")
    def _sealing_keys(self) -> Settings:
        # Imported here: the attestation module imports the identity models, not the settings.
        from onboarding.identity.attestation import sealing_keys, verification_keys

        if self.sealing_keys:
            sealing_keys(self.sealing_keys.get_secret_value())
        if self.sealing_verification_keys:
            verification_keys(self.sealing_verification_keys)
        return self

    @model_validator(mode="after")
    def _payload_keys(self) -> Settings:
        current = self.payload_encryption_key_id
        if not self.payload_encryption_keys:
            if current:
                raise ValueError(
                    "PAYLOAD_ENCRYPTION_KEY_ID is set but PAYLOAD_ENCRYPTION_KEYS is not")
            return self
        ids = payload_keys(self.payload_encryption_keys.get_secret_value())
        if current and current not in ids:
            raise ValueError(f"PAYLOAD_ENCRYPTION_KEY_ID {current!r} must be one of the ids in "
                             f"PAYLOAD_ENCRYPTION_KEYS ({', '.join(ids)})")
        return self


_KEY_ID = re.compile(r"[A-Za-z0-9_-]+")


def keyring(text: str, variable: str, kind: str, made: str) -> dict[str, bytes]:
    """`id:base64key,id:base64key` as {key id: 32-byte key}, in order: PAYLOAD_ENCRYPTION_KEYS,
    SEALING_KEYS, SEALING_VERIFICATION_KEYS. `kind` says what the 32 bytes are, `made` how to
    make them. A ValueError names the variable, the entry and the rule it breaks, never the
    key."""
    keys: dict[str, bytes] = {}
    for number, entry in enumerate(text.split(","), start=1):
        key_id, colon, encoded = entry.strip().partition(":")
        if not colon or not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"{variable} entry {number}: must be <id>:<base64 key>, "
                             "the id made of letters, digits, '-' and '_'")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            raise ValueError(f"{variable} key {key_id!r}: must be 32 bytes ({kind}), "
                             f"base64-encoded, {made}")
        if key_id in keys:
            raise ValueError(f"{variable} lists key id {key_id!r} twice")
        keys[key_id] = key
    return keys


def payload_keys(text: str) -> dict[str, bytes]:
    """PAYLOAD_ENCRYPTION_KEYS as {key id: 32-byte AES-256 key}, in order."""
    return keyring(text, "PAYLOAD_ENCRYPTION_KEYS", "AES-256",
                   "as `openssl rand -base64 32` prints")


@lru_cache
def get_settings() -> Settings:
    return Settings()
