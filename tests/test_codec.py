"""Payload encryption (onboarding.temporal.codec) and the codec server
(onboarding.services.codec_server).

The codec on its own: round trip, rotation, what it refuses. Then the promise it exists for:
an application driven on the dev server leaves a history in which Temporal holds no readable
organisation or contact data, which the codec server (and a reviewer's client without keys,
through it) reads back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from onboarding.core.config import Settings, payload_keys
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.decisions import LARGEST_DECISION_BYTES
from onboarding.domain.models import ApplicationStatus, SubscriptionApplication
from onboarding.temporal.client import connect
from onboarding.temporal.codec import (
    CodecServerClient,
    PayloadEncryption,
    PayloadEncryptionError,
    WithoutKeys,
    data_converter,
    for_worker,
    new_payload_key,
)
from starter import start_application
from tests.support import data, drive
from worker import WORKFLOW_RUNNER, WORKFLOWS, run_worker

UI_ORIGIN = "http://localhost:8233"


def keyring(*key_ids: str, current: str | None = None) -> Settings:
    return Settings(_env_file=None, payload_encryption_keys=",".join(map(new_payload_key, key_ids)),
                    payload_encryption_key_id=current)


def plaintext(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# --- the codec ---------------------------------------------------------------------------------


async def test_round_trip_leaves_nothing_readable(plain_settings):
    converter = data_converter(plain_settings)
    application = prepare_subscription(data.subscription_form(), plain_settings)

    first, = await converter.encode([application])
    second, = await converter.encode([application])

    assert first.metadata["encoding"] == b"binary/encrypted"
    assert first.metadata["encryption-key-id"] == b"test"
    assert application.organisation.legal_name.encode() not in first.SerializeToString()
    assert first.data != second.data  # a fresh nonce each time
    assert await converter.decode([first], [SubscriptionApplication]) == [application]


async def test_a_rotated_key_still_decrypts_what_it_encrypted():
    before = keyring("2026a")
    old_key = before.payload_encryption_keys.get_secret_value()
    written_before, = await data_converter(before).encode(["Kim Minsu"])

    # The new key is added and made current; the old one stays to decrypt.
    after = Settings(_env_file=None, payload_encryption_key_id="2026b",
                     payload_encryption_keys=f"{old_key},{new_payload_key('2026b')}")
    written_after, = await data_converter(after).encode(["Kim Minsu"])

    assert written_after.metadata["encryption-key-id"] == b"2026b"
    assert await data_converter(after).decode([written_before, written_after], [str, str]) == \
        ["Kim Minsu", "Kim Minsu"]


async def test_an_unknown_key_id_is_an_error_naming_it():
    written, = await data_converter(keyring("retired")).encode(["Kim Minsu"])

    with pytest.raises(PayloadEncryptionError, match="'retired'.*not in PAYLOAD_ENCRYPTION_KEYS"):
        await data_converter(keyring("current")).decode([written])


async def test_an_altered_payload_is_an_error_naming_its_key_id():
    settings = keyring("k1")
    written, = await data_converter(settings).encode(["Kim Minsu"])
    altered = Payload()
    altered.CopyFrom(written)
    altered.data = written.data[:-1] + bytes([written.data[-1] ^ 1])
    same_id_other_key, = await data_converter(keyring("k1")).encode(["Kim Minsu"])

    for unreadable in (altered, same_id_other_key, Payload(metadata=written.metadata, data=b"")):
        with pytest.raises(PayloadEncryptionError, match="key id 'k1' fails authentication"):
            await data_converter(settings).decode([unreadable])


async def test_a_worker_passes_an_undecryptable_payload_on_for_the_workflow_to_refuse():
    """In a worker a raise would fail every workflow task of the application (one bad signal
    would wedge it); the payload goes on encrypted, and the workflow refuses it on the record."""
    written, = await data_converter(keyring("other")).encode(["Kim Minsu"])
    settings = keyring("k1")
    worker = for_worker(data_converter(settings))

    assert await worker.payload_codec.decode([written]) == [written]
    readable, = await data_converter(settings).encode(["Kim Minsu"])
    assert await worker.decode([readable]) == ["Kim Minsu"]
    with pytest.raises(PayloadEncryptionError):  # everywhere else it is an error
        await data_converter(settings).decode([written])


async def test_payloads_in_the_clear_pass_through():
    """Histories from before encryption, and CLI input sent without the codec server."""
    codec = PayloadEncryption(payload_keys(new_payload_key("k1")), "k1")
    clear = [plaintext("Kim Minsu"), Payload(metadata={"encoding": b"binary/null"})]

    assert await codec.decode(clear) == clear


async def test_failure_messages_and_stack_traces_are_encrypted(plain_settings):
    converter = data_converter(plain_settings)
    failure = Failure()
    try:
        raise ApplicationError("Fintech Secretive Co., Ltd. holds no licence")
    except ApplicationError as err:
        await converter.encode_failure(err, failure)
    stored = failure.SerializeToString()

    assert b"Secretive" not in stored and b"test_codec.py" not in stored
    assert str(await converter.decode_failure(failure)) == \
        "Fintech Secretive Co., Ltd. holds no licence"


async def test_without_keys_nothing_is_sent_and_clear_payloads_still_read():
    converter = data_converter(Settings(_env_file=None))
    assert isinstance(converter.payload_codec, WithoutKeys)

    with pytest.raises(PayloadEncryptionError, match="unencrypted: set PAYLOAD_ENCRYPTION_KEYS"):
        await converter.encode(["Kim Minsu"])
    assert await converter.decode([plaintext("Kim Minsu")], [str]) == ["Kim Minsu"]
    encrypted, = await data_converter(keyring("k1")).encode(["Kim Minsu"])
    with pytest.raises(PayloadEncryptionError, match="encrypted: set PAYLOAD_ENCRYPTION_KEYS"):
        await converter.decode([encrypted])


def test_keys_win_over_the_codec_server():
    both = keyring("k1").model_copy(update={"temporal_codec_endpoint": "http://localhost:8081"})
    endpoint_only = both.model_copy(update={"payload_encryption_keys": None})

    assert isinstance(data_converter(both).payload_codec, PayloadEncryption)
    assert isinstance(data_converter(endpoint_only).payload_codec, CodecServerClient)


GOOD = base64.b64encode(bytes(32)).decode()
SHORT = base64.b64encode(bytes(16)).decode()


@pytest.mark.parametrize(("keys", "key_id", "rule"), [
    ("k1", None, "PAYLOAD_ENCRYPTION_KEYS entry 1: must be <id>:<base64 key>"),
    (f"k1:{GOOD},bad id:{GOOD}", None,
     "PAYLOAD_ENCRYPTION_KEYS entry 2: must be <id>:<base64 key>"),
    (f"k1:{SHORT}", None, "PAYLOAD_ENCRYPTION_KEYS key 'k1': must be 32 bytes"),
    ("k1:not*base64", None, "PAYLOAD_ENCRYPTION_KEYS key 'k1': must be 32 bytes"),
    (f"k1:{GOOD},k1:{GOOD}", None, "PAYLOAD_ENCRYPTION_KEYS lists key id 'k1' twice"),
    (f"k1:{GOOD}", "k2", r"PAYLOAD_ENCRYPTION_KEY_ID 'k2' must be one of the ids in "
                         r"PAYLOAD_ENCRYPTION_KEYS \(k1\)"),
    (None, "k1", "PAYLOAD_ENCRYPTION_KEY_ID is set but PAYLOAD_ENCRYPTION_KEYS is not"),
])
def test_bad_key_configuration_is_refused_naming_the_variable_and_rule(
        keys, key_id, rule, monkeypatch):
    monkeypatch.delenv("PAYLOAD_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("PAYLOAD_ENCRYPTION_KEY_ID", raising=False)
    with pytest.raises(ValidationError, match=rule) as refused:
        Settings(_env_file=None, payload_encryption_keys=keys, payload_encryption_key_id=key_id)
    assert GOOD not in str(refused.value) and SHORT not in str(refused.value)


async def test_the_worker_refuses_to_start_without_keys(plain_settings):
    with pytest.raises(SystemExit, match="PAYLOAD_ENCRYPTION_KEYS is not set"):
        await run_worker(plain_settings.model_copy(update={"payload_encryption_keys": None}),
                         asyncio.Event())
    # Nor without the keys that tell who sealed a decision (issue 12).
    with pytest.raises(SystemExit, match="SEALING_VERIFICATION_KEYS is not set"):
        await run_worker(plain_settings.model_copy(update={"sealing_verification_keys": None}),
                         asyncio.Event())


# --- the codec server --------------------------------------------------------------------------


async def post(url: str, payloads: list[Payload], token: str | None,
               path: str = "/decode") -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "X-Namespace": "default"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        body = json_format.MessageToJson(Payloads(payloads=payloads))
        async with http.post(url + path, data=body, headers=headers) as response:
            return response.status, await response.text()


async def test_codec_server_encodes_and_decodes_for_a_verified_identity(codec_server,
                                                                        identity_provider):
    url, token = codec_server, await identity_provider.access_token(data.REVIEWER)
    clear = [plaintext("Kim Minsu")]

    status, encoded = await post(url, clear, token, "/encode")
    assert status == 200 and "Kim Minsu" not in encoded
    encrypted = list(json_format.Parse(encoded, Payloads()).payloads)
    for path in ("/decode", "/default/decode"):  # the CLI may put the namespace in the path
        status, decoded = await post(url, encrypted, token, path)
        assert status == 200
        assert list(json_format.Parse(decoded, Payloads()).payloads) == clear

    assert (await post(url, encrypted, None))[0] == 401
    assert (await post(url, encrypted, token + "x"))[0] == 401
    status, refused = await post(url, [Payload(metadata={"encoding": b"binary/encrypted",
                                                         "encryption-key-id": b"gone"})], token)
    assert status == 400 and "'gone'" in refused
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/decode", data="not json",
                             headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 400
        async with http.get(url + "/healthz") as response:
            assert response.status == 200


async def test_codec_server_refuses_to_encode_a_payload_larger_than_any_decision(
        codec_server, identity_provider):
    url, token = codec_server, await identity_provider.access_token(data.REVIEWER)
    largest = Payload(metadata={"encoding": b"json/plain"}, data=b"y" * LARGEST_DECISION_BYTES)
    status, _ = await post(url, [largest], token, "/encode")
    assert status == 200
    over = Payload(metadata={"encoding": b"json/plain"}, data=b"y" * (LARGEST_DECISION_BYTES + 1))
    status, refused = await post(url, [plaintext("ok"), over], token, "/encode")
    assert status == 413
    assert json.loads(refused)["error"] == (
        f"payloads[1]: {LARGEST_DECISION_BYTES + 1} bytes; a decision may have at most "
        f"{LARGEST_DECISION_BYTES} [too_large]")
    # What Temporal holds is decoded whatever its size.
    status, encoded = await post(url, [largest], token, "/encode")
    assert (await post(url, list(json_format.Parse(encoded, Payloads()).payloads), token))[0] \
        == 200


async def test_codec_server_answers_the_web_uis_preflight(codec_server):
    url = codec_server
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers":
                 "authorization,authorization-extras,content-type,x-namespace"}
    async with aiohttp.ClientSession() as http:
        async with http.options(url + "/decode", headers={"Origin": UI_ORIGIN, **asked}) as ok:
            assert ok.status == 204
            assert ok.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
            assert "POST" in ok.headers["Access-Control-Allow-Methods"]
            allowed = {h.strip().lower()
                       for h in ok.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"authorization", "authorization-extras", "content-type",
                    "x-namespace"} <= allowed
        async with http.options(url + "/decode",
                                headers={"Origin": "http://elsewhere.example", **asked}) as no:
            assert no.status == 403 and "Access-Control-Allow-Origin" not in no.headers
        # The answer itself carries the header too, or the browser withholds it from the UI.
        async with http.post(url + "/decode", data="{}", headers={"Origin": UI_ORIGIN}) as refused:
            assert refused.status == 401
            assert refused.headers["Access-Control-Allow-Origin"] == UI_ORIGIN


# --- history in the server ---------------------------------------------------------------------


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload in a history event, but for search attributes (in the clear by design)."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            values = list(value.values())
        elif field.is_repeated:
            values = list(value)
        else:
            values = [value]
        for item in values:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from payloads_in(item)


async def test_history_in_the_server_holds_no_organisation_or_contact_data(
        dev_server, settings, run_worker, task_queue, codec_server, identity_provider):
    tag = uuid.uuid4().hex[:8]
    form = data.subscription_form(representative=f"Park Jiyeon {tag}")
    application = prepare_subscription(form, settings)
    organisation = application.organisation
    applicant = str(organisation.contact_emails[0])
    contract = data.contract(f"OP-{tag}")
    d = data.decision
    async with run_worker(dev_server.client):
        handle = await start_application(
            dev_server.client, settings.model_copy(update={"temporal_task_queue": task_queue}),
            application)
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              d(data.REVIEWER, verdict="approve",
                                criteria=data.CRITERIA_HOLD))
        await drive.signal_at(handle, "platform_contract", "platform_contract",
                              d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
                                contract=contract))
        await drive.signal_at(handle, "final_approval", "final_approval",
                              d(data.APPROVER, verdict="approve"))  # a sandbox key, mailed
        await drive.signal_at(handle, "sandbox_testing", "withdraw",
                              d(applicant, note=f"{organisation.legal_name} stops the project"))
        status = await drive.result(handle)

    # What Temporal stores, read as anyone with access to its database would: no codec.
    address = dev_server.client.service_client.config.target_host
    anyone = await Client.connect(address, namespace=dev_server.client.namespace)
    history = await anyone.get_workflow_handle(handle.id).fetch_history()
    stored = b"".join(event.SerializeToString() for event in history.events)

    readable = [organisation.legal_name, organisation.representative, applicant,
                organisation.corporate_registration_number, "110111-0062432",
                application.service.name, contract["contract_number"], data.REVIEWER]
    assert [text for text in readable if text.encode() in stored] == []
    # In the clear by design: the business registration number, a public registry identifier
    # (workflow id, OrganisationId search attribute). Also proof that we read the real bytes.
    assert organisation.business_registration_number.encode() in stored
    payloads = [p for event in history.events for p in payloads_in(event)]
    assert len(payloads) > 20
    # In the clear by design too, written by the SDK's core: which code version the run follows
    # (a patch marker's id) and when a local activity ran (its marker's metadata; its result
    # is encrypted like any payload).
    plain = {e.marker_recorded_event_attributes.marker_name for e in history.events
             for p in payloads_in(e) if p.metadata["encoding"] != b"binary/encrypted"}
    assert plain <= {"core_patch", "core_local_activity"}, plain

    # Authorised reviewers read it through the codec server: the Web UI, the CLI ...
    url, token = codec_server, await identity_provider.access_token(data.REVIEWER)
    started = history.events[0].workflow_execution_started_event_attributes
    status_code, decoded = await post(url, list(started.input.payloads), token)
    assert status_code == 200
    submitted = json.loads(json_format.Parse(decoded, Payloads()).payloads[0].data)
    assert submitted["organisation"]["legal_name"] == organisation.legal_name
    assert submitted["organisation"]["representative"] == f"Park Jiyeon {tag}"

    # ... and a reviewer's own client, holding no keys.
    reviewer = settings.model_copy(update={
        "temporal_address": address, "temporal_namespace": dev_server.client.namespace,
        "payload_encryption_keys": None,
        "temporal_codec_endpoint": url})
    reviewing = await connect(reviewer, converter=data_converter(reviewer, token))
    assert await reviewing.get_workflow_handle(
        handle.id, result_type=ApplicationStatus).result() == status

    # The worker replays the encrypted history (as it does after its cache lets a workflow go).
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(settings),
                        workflow_runner=WORKFLOW_RUNNER)
    replayed = await replayer.replay_workflow(await handle.fetch_history(),
                                              raise_on_replay_failure=False)
    assert replayed.replay_failure is None
