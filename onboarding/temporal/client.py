"""One way to reach Temporal, used by the worker, the starter and the tests."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from onboarding.core.config import Settings
from onboarding.temporal.codec import data_converter


def _tls(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls:
        return False
    read = lambda p: p.read_bytes() if p else None  # noqa: E731
    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_server_ca),
        client_cert=read(settings.temporal_tls_client_cert),
        client_private_key=read(settings.temporal_tls_client_key),
    )


async def connect(settings: Settings, runtime: Runtime | None = None, *,
                  converter: DataConverter | None = None) -> Client:
    """A client of TEMPORAL_ADDRESS; `converter` replaces the one the settings make (the
    reviewer CLI's decisions go through the codec server, to be sealed)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        # Pydantic models in and out of every workflow, activity, signal, update and query,
        # encrypted on their way to Temporal (onboarding.temporal.codec).
        data_converter=converter or data_converter(settings),
        tls=_tls(settings) if not api_key else (_tls(settings) or True),
        api_key=api_key,
        runtime=runtime,
    )

