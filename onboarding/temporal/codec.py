"""Payloads encrypted before they leave the process, so that Temporal's database holds no
readable organisation or contact data.

Everything the platform hands Temporal passes through the data converter built here: workflow
inputs and results, signals, updates, queries, activity arguments and results, workflow
summaries, and failure messages and stack traces (which may quote an organisation). Each
payload becomes one AES-256-GCM ciphertext of the whole original payload (its metadata too),
tagged with the id of the key that encrypted it, as in Temporal's encryption samples:

    metadata  encoding: binary/encrypted, encryption-key-id: <id>
    data      12-byte random nonce + ciphertext (with its 16-byte tag)

Keys come from PAYLOAD_ENCRYPTION_KEYS, by id: the current one encrypts, all of them decrypt,
so a key is rotated without losing the histories written under the one before (docs/encryption.md).
A payload that is not `binary/encrypted` passes through unchanged: histories recorded before
encryption, and `temporal workflow signal --input ...` sent without the codec server, still
read. One that cannot be decrypted is an error naming its key id, never silently passed on.

What Temporal must read itself stays in the clear: workflow ids and search attributes (the
business registration number among them, a public registry identifier), signal and activity
names, timestamps.

A client without keys (a reviewer's laptop) uses the codec server instead
(`onboarding.services.codec_server`, at TEMPORAL_CODEC_ENDPOINT), as the Web UI and the CLI do.
One with neither reads what is in the clear and sends nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
from collections.abc import Mapping, Sequence

import aiohttp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
)

from onboarding.core.config import Settings, payload_keys
from onboarding.core.logs import get_logger

log = get_logger("codec")

ENCRYPTED = b"binary/encrypted"
KEY_ID = "encryption-key-id"
# Random 96-bit nonces are safe for 2**32 payloads under one key (NIST SP 800-38D), far beyond
# what the platform writes before a key is rotated.
NONCE_SIZE = 12


class PayloadEncryptionError(Exception):
    """A payload that cannot be decrypted here, or that would leave unencrypted. The message
    names the key id or the variable to set, never the payload's contents."""


class PayloadEncryption(PayloadCodec):
    """AES-256-GCM under the current key; decrypts under any key it holds, by id."""

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str, *,
                 pass_undecryptable: bool = False) -> None:
        if current_key_id not in keys:
            raise ValueError(f"the current key id {current_key_id!r} is not among the keys")
        self._keys = dict(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current_key_id
        self._pass_undecryptable = pass_undecryptable

    def for_worker(self) -> PayloadEncryption:
        """The same keys, but a payload that cannot be decrypted is passed on as it is (and
        logged with the reason) instead of raising. In a worker a raise would fail every
        workflow task of the application, so that one bad signal (sent with another key, or
        altered) would wedge it; passed on, the workflow refuses it on the record as a
        malformed decision. Anything else left encrypted fails to decode, visibly, as before."""
        return PayloadEncryption(self._keys, self._current, pass_undecryptable=True)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._current]
        encoded, key_id = [], self._current.encode()
        for payload in payloads:
            nonce = os.urandom(NONCE_SIZE)
            sealed = Payload(data=nonce + cipher.encrypt(nonce, payload.SerializeToString(), None))
            sealed.metadata["encoding"] = ENCRYPTED  # set one by one: twice as fast as a dict
            sealed.metadata[KEY_ID] = key_id
            encoded.append(sealed)
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt_or_pass(p) if p.metadata.get("encoding") == ENCRYPTED else p
                for p in payloads]

    def _decrypt_or_pass(self, payload: Payload) -> Payload:
        try:
            return self._decrypt(payload)
        except PayloadEncryptionError as err:
            if not self._pass_undecryptable:
                raise
            log.warning("payload cannot be decrypted: passed on encrypted", reason=str(err))
            return payload

    def _decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadEncryptionError(
                f"payload encrypted under key id {key_id!r}, which is not in "
                f"PAYLOAD_ENCRYPTION_KEYS (it holds {', '.join(self._ciphers)})")
        nonce, ciphertext = payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:]
        try:
            return Payload.FromString(cipher.decrypt(nonce, ciphertext, None))
        except (InvalidTag, ValueError):
            raise PayloadEncryptionError(
                f"payload under key id {key_id!r} fails authentication: altered, or encrypted "
                "with another key of the same id") from None


class CodecServerClient(PayloadCodec):
    """Encrypts and decrypts through the codec server, for clients that hold no keys, and for
    decisions, which the codec server seals for the verified sender of `access_token`
    (onboarding.identity.attestation)."""

    def __init__(self, endpoint: str, access_token: str | None = None) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._call("encode", payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._call("decode", payloads)

    async def _call(self, operation: str, payloads: Sequence[Payload]) -> list[Payload]:
        url = f"{self._endpoint}/{operation}"
        body = json_format.MessageToJson(Payloads(payloads=payloads))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.post(url, data=body, headers=self._headers) as response:
                text = await response.text()
                if response.status != 200:
                    raise PayloadEncryptionError(
                        f"the codec server at {url} answered {response.status}: {text[:200]}")
        return list(json_format.Parse(text, Payloads()).payloads)


class WithoutKeys(PayloadCodec):
    """A process with neither keys nor a codec server: it reads what is in the clear (search
    attributes, plaintext histories), and refuses to send anything, which would reach Temporal
    unencrypted."""

    _SET_ONE = "set PAYLOAD_ENCRYPTION_KEYS, or TEMPORAL_CODEC_ENDPOINT to use the codec server"

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if payloads:
            raise PayloadEncryptionError(f"refusing to send payloads to Temporal unencrypted: "
                                         f"{self._SET_ONE}")
        return []

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if any(p.metadata.get("encoding") == ENCRYPTED for p in payloads):
            raise PayloadEncryptionError(f"the payloads are encrypted: {self._SET_ONE}")
        return list(payloads)


def payload_encryption(settings: Settings) -> PayloadEncryption:
    """The keys of PAYLOAD_ENCRYPTION_KEYS, encrypting under the one PAYLOAD_ENCRYPTION_KEY_ID
    names, else the first."""
    if not settings.payload_encryption_keys:
        raise ValueError("PAYLOAD_ENCRYPTION_KEYS is not set")
    keys = payload_keys(settings.payload_encryption_keys.get_secret_value())
    return PayloadEncryption(keys, settings.payload_encryption_key_id or next(iter(keys)))


def payload_codec(settings: Settings, access_token: str | None = None) -> PayloadCodec:
    """The keys when this process has them, else the codec server when one is configured
    (which wants the sender's `access_token`)."""
    if settings.payload_encryption_keys:
        return payload_encryption(settings)
    if settings.temporal_codec_endpoint:
        return CodecServerClient(settings.temporal_codec_endpoint, access_token)
    return WithoutKeys()


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, one instance per process.

    The SDK makes a data converter around every workflow activation's payloads (two, one to
    decode, one to encode), and each instantiates its payload converter class; a
    PydanticPayloadConverter builds its pydantic schemas and starts a cache of type adapters of
    its own when instantiated (3-4 ms of worker CPU per lifecycle, bench/README.md). It holds
    nothing of a run or a caller (the cache is by type), so every instantiation here answers
    the one made at import."""

    _one: SharedPydanticPayloadConverter | None = None

    def __new__(cls) -> SharedPydanticPayloadConverter:
        if cls._one is None:
            cls._one = super().__new__(cls)
        return cls._one

    def __init__(self) -> None:
        if not hasattr(self, "converters"):  # made once: what __new__ answers is ready
            super().__init__()

    def with_context(self, context: SerializationContext) -> PydanticPayloadConverter:
        # The SDK's makes `type(self)()` and sets its converters: never this one's.
        converters = self.get_converters_with_context(context)
        if converters is None:
            return self
        other = PydanticPayloadConverter()
        other._set_converters(*converters)
        return other


SharedPydanticPayloadConverter()  # made now, before any thread could race to make it


def data_converter(settings: Settings, access_token: str | None = None, *,
                   codec: PayloadCodec | None = None) -> DataConverter:
    """Pydantic models in and out of every workflow, activity, signal, update and query,
    encrypted on their way to Temporal (by `codec` when given)."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=SharedPydanticPayloadConverter,
        payload_codec=codec or payload_codec(settings, access_token),
        # Failure messages and stack traces go into an encrypted payload too.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def for_worker(converter: DataConverter) -> DataConverter:
    """`converter` as a worker uses it (see PayloadEncryption.for_worker)."""
    codec = converter.payload_codec
    if not isinstance(codec, PayloadEncryption):
        return converter
    return dataclasses.replace(converter, payload_codec=codec.for_worker())


def new_payload_key(key_id: str) -> str:
    """A fresh PAYLOAD_ENCRYPTION_KEYS entry: `<key_id>:<32 random bytes, base64>`."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
