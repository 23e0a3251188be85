"""The codec server seals decisions for their verified sender (onboarding.services.codec_server),
over HTTP, against the real dev identity provider: with a bearer token (the `temporal` CLI, the
reviewer CLI, programs) and with its own sign-in's session cookie (the Web UI)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from onboarding.domain.decisions import LARGEST_DECISION_BYTES
from onboarding.identity.attestation import AttestationVerifier, verification_keys
from onboarding.services.codec_server import SESSION_COOKIE
from onboarding.store import identities
from onboarding.temporal.codec import payload_encryption
from tests.support import data, drive, identity

UI = "http://localhost:8233"
APPLICATION = "subscription-1248100998-aea1a1bdff67"


def as_json(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def decision(**changes) -> dict:
    return {"application_id": APPLICATION, "decision": "final_approval",
            "decision_id": "final-1", "verdict": "approve", **changes}


async def post(url: str, path: str, payloads: list[Payload], headers: dict | None = None
               ) -> tuple[int, str]:
    body = json_format.MessageToJson(Payloads(payloads=payloads))
    async with aiohttp.ClientSession() as http, http.post(
            url + path, data=body,
            headers={"Content-Type": "application/json", "X-Namespace": "default",
                     **(headers or {})}) as response:
        return response.status, await response.text()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def encoded(url: str, payloads: list[Payload], headers: dict) -> list[Payload]:
    status, text = await post(url, "/encode", payloads, headers)
    assert status == 200, text
    return list(json_format.Parse(text, Payloads()).payloads)


async def opened(plain_settings, payloads: list[Payload]) -> list[dict]:
    """What the worker reads: decrypted with the payload keys."""
    clear = await payload_encryption(plain_settings).decode(payloads)
    return [json.loads(p.data) for p in clear]


def seals(plain_settings) -> AttestationVerifier:
    return AttestationVerifier(verification_keys(plain_settings.sealing_verification_keys))


async def test_nothing_is_encoded_or_decoded_without_a_verified_identity(codec_server,
                                                                          identity_provider):
    forged = identity_provider.mint(identity_provider.claims(data.APPROVER),
                                    key=identity.another_rsa_key())
    expired = identity_provider.mint(identity_provider.claims(data.APPROVER, exp=1, iat=0))

    for path in ("/encode", "/decode"):
        for headers, reason in [({}, "sign in"), (bearer(forged), "signature does not verify"),
                                (bearer(expired), "expired"),
                                ({"Authorization": "Basic x"}, "Bearer <access token>")]:
            status, text = await post(codec_server, path, [as_json(decision())], headers)
            assert status == 401 and reason in json.loads(text)["error"], (path, text)


async def test_a_decision_is_sealed_for_the_token_holder(codec_server, identity_provider,
                                                         plain_settings):
    token = await identity_provider.access_token(data.APPROVER)
    copied = "eyJ.copied.seal"

    sealed, = await opened(plain_settings, await encoded(
        codec_server, [as_json(decision(attestation=copied))], bearer(token)))

    assert sealed["attestation"] != copied  # a seal sent along is replaced, never kept
    who = seals(plain_settings).check(sealed["attestation"], APPLICATION, "final_approval",
                                      "final-1", sealed, datetime.now(UTC))
    assert who.email == data.APPROVER and who.kind == "person"
    assert who.subject == identity_provider.subject(data.APPROVER)
    assert who.issuer == identity_provider.issuer


async def test_a_service_token_seals_as_the_service(codec_server, identity_provider,
                                                    plain_settings):
    token = await identity_provider.service_token()

    withdrawal = {**decision(decision="withdraw")}
    del withdrawal["verdict"]
    sealed, = await opened(plain_settings, await encoded(
        codec_server, [as_json(withdrawal)], bearer(token)))

    who = seals(plain_settings).check(sealed["attestation"], APPLICATION, "withdraw",
                                      "final-1", sealed, datetime.now(UTC))
    assert who.kind == "service" and who.client_id == identity.SERVICE


async def test_what_is_not_a_decision_is_encrypted_only(codec_server, identity_provider,
                                                        plain_settings):
    token = await identity_provider.access_token(data.REVIEWER)
    start_input = {"application_id": APPLICATION, "organisation": {"legal_name": "Nuri"}}

    out = await opened(plain_settings, await encoded(
        codec_server, [as_json(start_input), as_json("text"), as_json([1, 2])], bearer(token)))

    assert out == [start_input, "text", [1, 2]]


async def test_a_decision_that_cannot_be_sealed_is_refused(codec_server, identity_provider):
    token = await identity_provider.access_token(data.REVIEWER)
    unbound = {"decision_id": "d1", "decided_by": data.APPROVER, "verdict": "approve"}
    refused = [
        (unbound, "application_id, decision"),
        (decision(decision="final_aproval"), "final_aproval is not a decision a person takes"),
        (decision(decision="pre_review"), "pre_review is not a decision a person takes on "
                                          f"{APPLICATION}"),
        (decision(decision="service_launched", application_id="publication-1-x"),
         "service_launched is not a decision a person takes"),
        (decision(verdict="maybe", note=3),
         "malformed final_approval: note: Input should be a valid string [string_type]; "
         "verdict: Input should be 'approve' or 'reject' [literal_error]"),
        (decision(note="x" * 2001), "note: String should have at most 2000 characters"),
    ]
    for sent, reason in refused:
        status, text = await post(codec_server, "/encode", [as_json(sent)], bearer(token))
        assert status == 400 and reason in json.loads(text)["error"], text


async def test_a_decision_is_sealed_as_the_workflow_reads_it(codec_server, identity_provider,
                                                             plain_settings):
    """`outcome`, the former name of `verdict`, is sealed and sent on under today's name, so
    the workflow's copy (a signal's JSON, an update's model) hashes as what was sealed."""
    token = await identity_provider.access_token(data.APPROVER)
    typed = {**decision(), "outcome": "approve"}
    del typed["verdict"]

    sealed, = await opened(plain_settings, await encoded(codec_server, [as_json(typed)],
                                                         bearer(token)))

    assert "outcome" not in sealed and sealed["verdict"] == "approve"
    assert seals(plain_settings).check(sealed["attestation"], APPLICATION, "final_approval",
                                       "final-1", sealed, datetime.now(UTC)).email == data.APPROVER


async def test_an_oversized_decision_is_refused_before_anything(codec_server, identity_provider):
    """The caps are the catalogue's (DecisionType.max_payload_bytes): past the largest, a
    payload is not even read."""
    token = await identity_provider.access_token(data.APPROVER)
    publication = "publication-1248100998-bond-yields"
    spec = {"openapi": "3.1.0", "info": {"title": "y", "version": "1"},
            "x-padding": "y" * 100_000}
    revised = decision(application_id=publication, decision="revise_specification",
                       integration_method="vpn", specification=spec)
    del revised["verdict"]

    status, text = await post(codec_server, "/encode",
                              [as_json(decision(note="x" * LARGEST_DECISION_BYTES))], bearer(token))
    assert status == 413 and f"at most {LARGEST_DECISION_BYTES}" in text
    # The one decision carrying a whole OpenAPI document has room for it.
    assert (await post(codec_server, "/encode", [as_json(revised)], bearer(token)))[0] == 200


# --- the Web UI's way: the codec server's own sign-in --------------------------------------------


def cookie(response: aiohttp.ClientResponse, name: str) -> str:
    jar = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar[name].value


async def start_sign_in(codec_server: str) -> tuple[str, str]:
    """GET /login as a browser: where it is sent (the provider), and the cookie it gets."""
    async with aiohttp.ClientSession() as http, http.get(codec_server + "/login",
                                                         allow_redirects=False) as started:
        assert started.status == 302
        return started.headers["Location"], cookie(started, "onboarding_codec_login")


async def signed_in_session(codec_server: str, identity_provider, email: str) -> tuple[str, str]:
    """A browser's sign-in at the codec server: /login, the provider's form, /callback.
    Returns the session cookie and the Set-Cookie header it came with."""
    user = identity_provider.person(email)
    to_provider, login_cookie = await start_sign_in(codec_server)
    assert to_provider.startswith(identity_provider.issuer + "/authorize?")
    back = await asyncio.to_thread(identity.submit_sign_in_form, to_provider, user.email,
                                   user.password)
    assert back.startswith(codec_server + "/callback?")
    async with aiohttp.ClientSession() as http, http.get(
            back, headers={"Cookie": f"onboarding_codec_login={login_cookie}"},
            allow_redirects=False) as done:
        assert done.status == 200, await done.text()
        assert email in await done.text()
        header = next(h for h in done.headers.getall("Set-Cookie") if SESSION_COOKIE in h)
        return cookie(done, SESSION_COOKIE), header


async def test_a_sign_in_returns_only_to_the_browser_that_started_it(codec_server,
                                                                     identity_provider):
    """Login CSRF: someone else's callback (their code, their state) opened in my browser."""
    user = identity_provider.person(data.APPROVER)
    to_provider, _ = await start_sign_in(codec_server)
    back = await asyncio.to_thread(identity.submit_sign_in_form, to_provider, user.email,
                                   user.password)
    async with aiohttp.ClientSession() as http, http.get(back, allow_redirects=False) as foreign:
        assert foreign.status == 400


async def test_the_web_ui_seals_with_the_codec_servers_sign_in(codec_server, identity_provider,
                                                                plain_settings):
    session, set_cookie = await signed_in_session(codec_server, identity_provider, data.PLATFORM)
    from_ui = {"Cookie": f"{SESSION_COOKIE}={session}", "Origin": UI}

    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    sealed, = await opened(plain_settings, await encoded(
        codec_server, [as_json(decision(decision="sandbox_verification"))], from_ui))
    who = seals(plain_settings).check(sealed["attestation"], APPLICATION,
                                      "sandbox_verification", "final-1", sealed,
                                      datetime.now(UTC))
    assert who.email == data.PLATFORM

    # The cookie goes with any page of the site: only the UI's origins may ride on it, and
    # only with a JSON body (a form cannot send one without asking first).
    elsewhere = {**from_ui, "Origin": "http://localhost:9999"}
    status, text = await post(codec_server, "/encode", [as_json(decision())], elsewhere)
    assert status == 403 and "Web UI's origins" in text
    async with aiohttp.ClientSession() as http:
        async with http.post(codec_server + "/encode", data="payloads=x", headers={
                **from_ui, "Content-Type": "application/x-www-form-urlencoded"}) as form:
            assert form.status == 403
        async with http.get(codec_server + "/whoami", headers=from_ui) as me:
            assert (await me.json())["email"] == data.PLATFORM
        async with http.get(codec_server + "/logout", headers=from_ui) as out:
            assert out.status == 200
    status, _ = await post(codec_server, "/encode", [as_json(decision())], from_ui)
    assert status == 401


async def test_sign_in_returns_only_to_the_web_uis_origins(codec_server):
    async with aiohttp.ClientSession() as http:
        async with http.get(codec_server + "/login",
                            params={"return_to": "http://evil.example/x"},
                            allow_redirects=False) as refused:
            assert refused.status == 400
        async with http.get(codec_server + "/login", params={"return_to": f"{UI}/namespaces"},
                            allow_redirects=False) as fine:
            assert fine.status == 302
            assert urlsplit(fine.headers["Location"]).path == "/authorize"


@pytest.mark.parametrize("path", ["/encode", "/decode"])
async def test_a_preflight_needs_no_identity(codec_server, path):
    async with aiohttp.ClientSession() as http, http.options(codec_server + path, headers={
            "Origin": UI, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"}) as answer:
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"


# --- a program, as a service -----------------------------------------------------------------------


def load_example():
    path = Path(__file__).resolve().parent.parent / "examples" / "service_decision.py"
    spec = importlib.util.spec_from_file_location("service_decision", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_program_decides_as_a_service_through_the_codec_server(
        codec_server, identity_provider, dev_server, run_worker, settings, task_queue, pool):
    example = load_example()
    program = settings.model_copy(update={
        "temporal_address": dev_server.client.service_client.config.target_host,
        "temporal_namespace": dev_server.client.namespace, "payload_encryption_keys": None,
        "oidc_issuer": identity_provider.issuer, "temporal_codec_endpoint": codec_server})
    async with run_worker(dev_server.client):
        application, handle = await start(dev_server, settings, task_queue)
        # The roster lists the portal as acting for this applicant.
        await identities.grant_mandate(pool, identity_provider.issuer, identity.SERVICE,
                                       application.organisation.business_registration_number)
        await drive.wait_for_step(handle, "pre_verification")
        client = await example.service_client(program, identity.SERVICE, identity.SERVICE_SECRET)
        answer = await client.get_workflow_handle(handle.id).execute_update("withdraw", {
            "decision_id": "w-portal", "decided_by": identity.SERVICE, "note": "for the applicant",
            "application_id": handle.id, "decision": "withdraw"})
        history = await handle.fetch_history()

    assert answer["decision_id"] == "w-portal" and answer["applied"], answer
    [update] = [e.workflow_execution_update_accepted_event_attributes for e in history.events
                if e.HasField("workflow_execution_update_accepted_event_attributes")]
    sent, = await opened(settings, list(update.accepted_request.input.args.payloads))
    who = seals(settings).check(sent["attestation"], handle.id, "withdraw", "w-portal", sent,
                                datetime.now(UTC))
    assert who.kind == "service" and who.client_id == identity.SERVICE


async def start(dev_server, settings, task_queue):
    application = data.new_application(settings)
    return application, await drive.start(dev_server.client, settings, task_queue, application)
