"""A program taking a decision as a service (the operator's developer portal, say): it gets its
own token with OAuth2 client credentials, and sends the decision through the codec server,
which seals it for the service (docs/identity.md). A service acts only for the organisations
the roster lists it for (service_mandates), and never as staff.

    OIDC_ISSUER=http://localhost:8180 TEMPORAL_CODEC_ENDPOINT=http://localhost:8081 \\
    SERVICE_CLIENT_ID=developer-portal SERVICE_CLIENT_SECRET=<from .data/dev-passwords.txt> \\
    python examples/service_decision.py subscription-1248100998-aea1a1bdff67 \\
        sandbox_testing_complete '{"note": "all scenarios pass"}'

(`make up` writes OIDC_ISSUER and TEMPORAL_CODEC_ENDPOINT into .data/dev.env, which this
reads too.) It prints the workflow's answer: applied, or refused with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

from temporalio.client import Client

from onboarding.core.config import Settings, get_settings
from onboarding.identity import oidc
from onboarding.temporal.client import connect
from onboarding.temporal.codec import CodecServerClient, data_converter


async def service_client(settings: Settings, client_id: str, secret: str) -> Client:
    """A Temporal client whose payloads go through the codec server with the service's token:
    every decision it sends is sealed for the service."""
    if not settings.oidc_issuer or not settings.temporal_codec_endpoint:
        raise SystemExit("set OIDC_ISSUER and TEMPORAL_CODEC_ENDPOINT")
    endpoints = await oidc.discover(settings.oidc_provider_url or settings.oidc_issuer)
    token = (await oidc.client_credentials(endpoints, client_id, secret))["access_token"]
    sealing = CodecServerClient(settings.temporal_codec_endpoint, token)
    return await connect(settings, converter=data_converter(settings, codec=sealing))


async def main(application_id: str, decision: str, fields: dict) -> None:
    client_id = os.environ["SERVICE_CLIENT_ID"]
    client = await service_client(get_settings(), client_id, os.environ["SERVICE_CLIENT_SECRET"])
    payload = {"decision_id": f"{decision}-{uuid.uuid4().hex[:12]}", "decided_by": client_id,
               **fields, "application_id": application_id, "decision": decision}
    answer = await client.get_workflow_handle(application_id).execute_update(decision, payload)
    print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if len(arguments) not in (2, 3):
        raise SystemExit(__doc__)
    asyncio.run(main(arguments[0], arguments[1],
                     json.loads(arguments[2]) if len(arguments) == 3 else {}))
