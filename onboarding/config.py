"""Configuration, read once from the environment (and an optional `.env` file).

Every variable is documented in the README's configuration table; `tests/test_compose.py`
checks that docker-compose.yml only sets variables defined here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # `.data/dev.env` is written by `make up` (the embedded database's URL) for other terminals.
    model_config = SettingsConfigDict(env_file=(".env", ".data/dev.env"), extra="ignore")

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

    # API keys: a key is derived from this secret and the issuance id, so that a retried
    # issuance re-derives the same key instead of issuing a second one. Only its hash is stored.
    key_issuance_secret: SecretStr | None = Field(None, min_length=32)
    sandbox_key_valid_days: int = Field(180, ge=1)
    production_key_valid_days: int = Field(730, ge=1)

    # Mail: notices are delivered over SMTP when SMTP_HOST is set; otherwise they stay in the
    # outbox. Key delivery needs SMTP: without it, issuance retries until SMTP is configured.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30
    mail_from: str = "openapi-platform@localhost"

    # Default deadlines given to new applications (see README: deadlines).
    remind_after_days: int = Field(7, ge=1)
    escalate_after_days: int = Field(21, ge=1)
    lapse_after_days: int = Field(90, ge=1)

    # Dev stack (`make up`)
    data_dir: Path = Path(".data")
    temporal_ui_port: int = 8233

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if bool(self.temporal_tls_client_cert) != bool(self.temporal_tls_client_key):
            raise ValueError("TEMPORAL_TLS_CLIENT_CERT and TEMPORAL_TLS_CLIENT_KEY go together")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
