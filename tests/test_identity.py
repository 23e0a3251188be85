"""Verified identities (onboarding.identity): access tokens from the real dev identity provider,
sealed decisions, and a decision's verification with a roster.

Impersonation is what these tests try: tokens for another audience, expired, from another
issuer, unsigned, signed by another key or with the public key as an HMAC secret; seals copied
to another application, another decision or other content, expired, under an unknown key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from onboarding.domain.decisions import decision_type
from onboarding.identity import decisions as verification
from onboarding.identity.attestation import (
    AttestationVerifier,
    Sealer,
    new_sealing_key,
    sealed_json,
    sealing_keys,
    verification_keys,
)
from onboarding.identity.models import (
    BAD_SIGNATURE,
    EXPIRED,
    NOT_VERIFIED,
    OTHER_APPLICATION,
    OTHER_CONTENT,
    OTHER_DECISION,
    UNKNOWN_KEY,
    DecisionCheck,
    IdentityRef,
    VerifiedIdentity,
    decision_content,
)
from onboarding.identity.tokens import TokenRefused, TokenVerifier, kind_of
from onboarding.store import identities as store
from tests.support import data, identity
from tests.support.identity import AUDIENCE

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
APPLICATION = "subscription-1248100998-aea1a1bdff67"
ISSUER = "https://id.operator.example.com"
APPROVER = VerifiedIdentity(issuer=ISSUER, subject="u-approver", kind="person",
                            email=data.APPROVER, name="Ann Approver", client_id="onboarding-cli")
PORTAL = VerifiedIdentity(issuer=ISSUER, subject="developer-portal", kind="service",
                          client_id="developer-portal")


# --- access tokens, from the real provider ---------------------------------------------------------


@pytest.fixture(scope="module")
def verifier(identity_provider) -> TokenVerifier:
    return TokenVerifier(identity_provider.issuer, AUDIENCE)


async def verify(verifier: TokenVerifier, token: str) -> VerifiedIdentity:
    return await asyncio.to_thread(verifier.verify, token)


async def test_a_signed_in_person_is_verified_by_issuer_and_subject(identity_provider, verifier):
    token = await identity_provider.access_token(data.APPROVER)

    who = await verify(verifier, token)

    assert who.kind == "person"
    assert who.issuer == identity_provider.issuer
    assert who.subject == identity_provider.subject(data.APPROVER) != data.APPROVER
    assert who.email == data.APPROVER and who.name == "Ann Approver"
    assert jwt.get_unverified_header(token)["kid"] == identity_provider.provider.key.kid


async def test_a_client_credentials_token_is_a_service(identity_provider, verifier):
    who = await verify(verifier, await identity_provider.service_token())

    assert who.kind == "service" and who.client_id == identity.SERVICE and who.email is None


def test_the_service_rule_covers_rfc_9068_and_keycloak():
    assert kind_of({"sub": "portal", "client_id": "portal"}) == "service"
    # Keycloak: the client's service-account user, a UUID subject.
    assert kind_of({"sub": "5f0c…", "azp": "portal",
                    "preferred_username": "service-account-portal"}) == "service"
    assert kind_of({"sub": "5f0c…", "azp": "onboarding-cli",
                    "preferred_username": "approver@operator.example.com"}) == "person"
    assert kind_of({"sub": "u-1", "client_id": "onboarding-cli"}) == "person"


async def test_an_unverified_email_is_not_taken(identity_provider, verifier):
    token = identity_provider.mint(identity_provider.claims(email_verified=False))

    assert (await verify(verifier, token)).email is None


@pytest.mark.parametrize("change, reason", [
    ({"aud": "another-api"}, "not for audience 'onboarding'"),
    ({"exp": 1_000_000_000, "iat": 999_999_000}, "token expired"),
    ({"iss": "https://elsewhere.example.com"}, "not issued by"),
    ({"nbf": 4_000_000_000}, "not yet valid"),
    ({"sub": None}, 'missing the "sub" claim'),
    ({"typ": "ID"}, "not an access token"),
    ({"sub": "s" * 256}, "subject is not at most 255 ASCII characters"),
    ({"sub": "\u00e9"}, "subject is not at most 255 ASCII characters"),
])
async def test_tokens_with_wrong_claims_are_refused(identity_provider, verifier, change, reason):
    forged = identity_provider.mint(identity_provider.claims(**change))

    with pytest.raises(TokenRefused, match=reason):
        await verify(verifier, forged)


async def test_the_id_token_is_not_an_access_token(identity_provider, verifier):
    tokens = await identity_provider.sign_in(data.APPROVER)

    with pytest.raises(TokenRefused, match="audience"):
        await verify(verifier, tokens["id_token"])


async def test_alg_none_is_refused(identity_provider, verifier):
    forged = identity.unsigned(identity_provider.claims(), identity_provider.provider.key.kid)

    with pytest.raises(TokenRefused, match="algorithm 'none' is not allowed"):
        await verify(verifier, forged)


async def test_a_token_signed_by_another_key_is_refused(identity_provider, verifier):
    forged = identity_provider.mint(identity_provider.claims(), key=identity.another_rsa_key())

    with pytest.raises(TokenRefused, match="signature does not verify"):
        await verify(verifier, forged)


async def test_hs256_with_the_public_key_as_secret_is_refused(identity_provider, verifier):
    """The classic confusion: a verifier that lets the token choose HS256 would check the HMAC
    with the provider's public key, which anyone can read."""
    claims = json.dumps(identity_provider.claims()).encode()
    header = jwt.utils.base64url_encode(json.dumps(
        {"alg": "HS256", "typ": "JWT", "kid": identity_provider.provider.key.kid}).encode())
    body = jwt.utils.base64url_encode(claims)
    mac = hmac.new(identity_provider.public_pem(), header + b"." + body, hashlib.sha256)
    forged = (header + b"." + body + b"." + jwt.utils.base64url_encode(mac.digest())).decode()

    with pytest.raises(TokenRefused, match="algorithm 'HS256' is not allowed"):
        await verify(verifier, forged)


async def test_a_key_of_another_algorithm_family_is_refused(identity_provider, verifier):
    """PS256 signed with the provider's RSA key, which the JWKS publishes for RS256 only."""
    forged = identity_provider.mint(identity_provider.claims(), algorithm="PS256")

    with pytest.raises(TokenRefused, match="does not match the key's algorithm"):
        await verify(verifier, forged)


async def test_an_unknown_key_id_is_refused(identity_provider, verifier):
    forged = identity_provider.mint(identity_provider.claims(), kid="someone-elses")

    with pytest.raises(TokenRefused, match="no key of the identity provider"):
        await verify(verifier, forged)


async def test_garbage_is_not_a_token(verifier):
    with pytest.raises(TokenRefused, match="not a JWT"):
        await verify(verifier, "not-a-token")


# --- sealed decisions (pure) --------------------------------------------------------------------


def sealer(*kids: str) -> tuple[Sealer, AttestationVerifier]:
    pairs = [new_sealing_key(kid) for kid in kids or ("k1",)]
    private = sealing_keys(",".join(p for p, _ in pairs))
    public = verification_keys(",".join(p for _, p in pairs))
    return Sealer(private), AttestationVerifier(public)


def approval(**changes) -> dict:
    return {"decision_id": "final-1", "application_id": APPLICATION, "decision": "final_approval",
            "decided_by": data.APPROVER, "verdict": "approve", **changes}


def test_a_seal_names_who_sealed_it():
    seal, check = sealer()
    content = approval()
    attestation = seal.seal(APPROVER, APPLICATION, "final_approval", "final-1", content, now=NOW)

    assert check.check(attestation, APPLICATION, "final_approval", "final-1",
                       {**content, "attestation": attestation}, NOW) == APPROVER
    # Key order and spacing do not matter: the content is hashed in canonical form.
    reordered = json.loads(json.dumps(dict(reversed(list(content.items())))))
    assert check.check(attestation, APPLICATION, "final_approval", "final-1", reordered,
                       NOW + timedelta(minutes=14)) == APPROVER


@pytest.mark.parametrize("where, reason", [
    ({"application_id": "subscription-2208162517-000000000000"}, OTHER_APPLICATION),
    ({"decision": "production_switch"}, OTHER_DECISION),
    ({"decision_id": "final-2"}, OTHER_DECISION),
    ({"content": approval(verdict="reject")}, OTHER_CONTENT),
    ({"content": approval(note="added later")}, OTHER_CONTENT),
    ({"at": NOW + timedelta(minutes=16)}, EXPIRED),
])
def test_a_seal_counts_for_its_application_decision_content_and_time_only(where, reason):
    seal, check = sealer()
    attestation = seal.seal(APPROVER, APPLICATION, "final_approval", "final-1", approval(),
                            now=NOW)
    asked = {"application_id": APPLICATION, "decision": "final_approval",
             "decision_id": "final-1", "content": approval(), "at": NOW, **where}

    assert check.check(attestation, **asked) == reason


def test_no_seal_a_forged_one_or_an_unknown_key_is_refused():
    seal, check = sealer("k1")
    other, _ = sealer("k1")  # same key id, another key
    stranger, _ = sealer("k9")
    args = (APPLICATION, "final_approval", "final-1", approval(), NOW)
    genuine = seal.seal(APPROVER, *args[:4], now=NOW)
    head, claims, signature = genuine.split(".")
    lifted = json.loads(jwt.utils.base64url_decode(claims))
    lifted["identity"]["email"] = data.REVIEWER
    tampered = ".".join([head, jwt.utils.base64url_encode(json.dumps(lifted).encode()).decode(),
                         signature])

    assert check.check(None, *args) == NOT_VERIFIED
    assert check.check("", *args) == NOT_VERIFIED
    assert check.check("garbage", *args) == BAD_SIGNATURE
    assert check.check(tampered, *args) == BAD_SIGNATURE
    assert check.check(other.seal(APPROVER, *args[:4], now=NOW), *args) == BAD_SIGNATURE
    assert check.check(stranger.seal(APPROVER, *args[:4], now=NOW), *args) == UNKNOWN_KEY


def test_rotation_overlap_then_retirement():
    old_private, old_public = new_sealing_key("2026a")
    new_private, new_public = new_sealing_key("2026b")
    args = (APPLICATION, "final_approval", "final-1", approval())
    sealed_before = Sealer(sealing_keys(old_private)).seal(APPROVER, *args, now=NOW)
    # The switch: the new key seals first; both public keys verify during the overlap.
    switched = Sealer(sealing_keys(f"{new_private},{old_private}"))
    sealed_after = switched.seal(APPROVER, *args, now=NOW)
    overlap = AttestationVerifier(verification_keys(f"{new_public},{old_public}"))
    retired = AttestationVerifier(verification_keys(new_public))

    assert jwt.get_unverified_header(sealed_after)["kid"] == "2026b"
    assert overlap.check(sealed_before, *args, NOW) == APPROVER
    assert overlap.check(sealed_after, *args, NOW) == APPROVER
    assert switched.verifier().check(sealed_before, *args, NOW) == APPROVER
    assert retired.check(sealed_after, *args, NOW) == APPROVER
    assert retired.check(sealed_before, *args, NOW) == UNKNOWN_KEY


def test_bad_key_settings_are_refused_naming_the_variable_never_the_key():
    private, _ = new_sealing_key("k1")
    for text, rule in [("k1", "must be <id>:<base64 key>"), ("k1:c2hvcnQ=", "32 bytes"),
                       (f"{private},{private}", "twice")]:
        with pytest.raises(ValueError, match=rule) as refused:
            sealing_keys(text)
        assert "SEALING_KEYS" in str(refused.value)
        assert private.split(":")[1] not in str(refused.value)


PUBLICATION = "publication-1248100998-bond-yields"


@pytest.mark.parametrize("application_id, name, sent", [
    (APPLICATION, "pre_verification", {
        "decision_id": "d1", "decided_by": data.REVIEWER, "verdict": "approve", "criteria": {
            "related_to_capital_market_development": True, "not_speculative_or_gambling": True,
            "not_harmful_to_public_morals": True}}),
    (APPLICATION, "market_data_licence", {
        "decision_id": "d2", "decided_by": data.SALES, "verdict": "concluded",
        "contract": data.contract("MD-1"), "note": "한국어 메모"}),
    (APPLICATION, "platform_contract", {"decision_id": "d3", "decided_by": data.PLATFORM,
                                        "verdict": "reject", "contract": None, "note": ""}),
    # Stop 8's name for the verdict, still read: sealed and sent on under today's.
    (APPLICATION, "final_approval", {"decision_id": "d4", "decided_by": data.APPROVER,
                                     "outcome": "approve"}),
    (APPLICATION, "resubmit", {"decision_id": "d5", "decided_by": "dev@fintech.example.com",
                               "service": {"name": "Robo", "description": "x",
                                           "expected_launch": "2027-06-01"},
                               "requested_apis": ["stock-quotes"]}),
    (PUBLICATION, "revise_specification", {
        "decision_id": "d6", "decided_by": "p@provider.example.com", "integration_method": "vpn",
        "specification": {"openapi": "3.1.0", "x-ratio": 1.5, "x-count": 3,
                          "x-list": [1, "a", None]}}),
    (PUBLICATION, "withdraw", {"decision_id": "d7", "decided_by": "dev@fintech.example.com"}),
])
def test_a_decision_is_sealed_as_the_workflow_will_read_it(application_id, name, sent):
    """The seal binds the decision as its model reads it, so the worker's copy (a signal's
    JSON read with the model, an update's model) hashes as what was sealed: for what the Web
    UI sends (the fields typed), for what the CLI sends (every field, defaults included), and
    for a field sent under its former name."""
    sealer = Sealer(sealing_keys(new_sealing_key("k")[0]))
    model = decision_type(application_id, name).model
    for as_sent in (sent, model.model_validate(sent).model_dump(mode="json")):
        as_sent = {**as_sent, "application_id": application_id, "decision": name,
                   "attestation": "a seal brought along"}
        sealed = sealer.seal_decision(APPROVER, as_sent, now=NOW)
        decoded = model.model_validate_json(sealed_json(sealed))
        assert sealer.verifier().check(decoded.attestation, application_id, name,
                                       sent["decision_id"], decision_content(decoded),
                                       NOW) == APPROVER
        assert "outcome" not in sealed


# --- a decision's verification ---------------------------------------------------------------------


class Roster:
    """The roster as the worker reads it (onboarding.store.identities), in memory."""

    def __init__(self, staff: dict[IdentityRef, list[str]], mandates=(),
                 enrolled: dict[IdentityRef, str] | None = None) -> None:
        self.staff = staff
        self.mandates = set(mandates)
        self.enrolled = enrolled or {}

    async def staff_roles(self, person):
        return self.staff.get(person, [])

    async def acts_for(self, issuer, client_id, organisation):
        return (issuer, client_id, organisation) in self.mandates

    async def staff_id(self, person):
        return self.enrolled.get(person)


ROSTER = Roster({APPROVER.ref(): ["final_approver"]},
                mandates=[(ISSUER, "developer-portal", "1248100998")])


def check_of(who: VerifiedIdentity | None, role: str = "final_approver", **changes
             ) -> tuple[DecisionCheck, AttestationVerifier]:
    seal, seals = sealer()
    content = approval(decided_by=who.email if who and who.email else None)
    content = {k: v for k, v in content.items() if v is not None}
    attestation = seal.seal(who, APPLICATION, "final_approval", "final-1", content, now=NOW) \
        if who else None
    fields = {"application_id": APPLICATION, "organisation": "1248100998",
              "decision": "final_approval", "decision_id": "final-1", "content": content,
              "attestation": attestation, "role": role, "received_at": NOW,
              "decided_by": content.get("decided_by"),
              "applicant_contacts": ["Dev@Fintech.example.com"], **changes}
    return DecisionCheck(**fields), seals


async def verdict(who, role="final_approver", roster=ROSTER, **changes):
    check, seals = check_of(who, role, **changes)
    return await verification.verify_decision(check, seals, roster)


async def test_a_sealed_decision_by_the_role_holder_is_verified():
    answer = await verdict(APPROVER)

    assert answer.applied and answer.identity == APPROVER


async def test_a_typed_address_without_a_seal_is_not_verified():
    answer = await verdict(None, decided_by=data.APPROVER)

    assert not answer.applied and answer.reason == NOT_VERIFIED


async def test_a_typed_address_naming_someone_else_is_refused():
    answer = await verdict(APPROVER, decided_by=data.REVIEWER)

    assert answer.reason == (f"decided_by {data.REVIEWER} is not the verified identity "
                             f"({data.APPROVER})")


async def test_the_roster_decides_roles_by_issuer_and_subject_not_email():
    same_email_other_subject = APPROVER.model_copy(update={"subject": "u-impostor"})
    other_issuer = APPROVER.model_copy(update={"issuer": "https://elsewhere.example.com"})

    for who in (same_email_other_subject, other_issuer):
        answer = await verdict(who)
        assert answer.reason == f"{data.APPROVER} does not hold the role final_approver"


async def test_a_service_is_never_staff():
    roster = Roster({PORTAL.ref(): ["final_approver"]})  # even if someone put it there

    answer = await verdict(PORTAL, roster=roster, decided_by=None)

    assert answer.reason == ("service developer-portal is a service: a final_approver decision "
                             "needs a person")


async def test_four_eyes_on_verified_identities():
    answer = await verdict(APPROVER, not_by=[APPROVER.ref()])
    other_person = await verdict(APPROVER, not_by=[IdentityRef(issuer=ISSUER, subject="u-rev")])

    assert "four eyes" in answer.reason and not answer.applied
    assert other_person.applied


async def test_four_eyes_across_decisions_taken_before_seals():
    """An application running when sealing was deployed: its pre-verification was taken by a
    typed name. Its final approval is sealed; four eyes matches the two through the roster's
    enrolment of the verified identity (its staff id), not the seal's e-mail."""
    enrolled = Roster(ROSTER.staff, enrolled={APPROVER.ref(): "Approver@Operator.example.com"})
    renamed = APPROVER.model_copy(update={"email": "ann@operator.example.com"})

    same = await verdict(APPROVER, roster=enrolled, not_by_staff=[data.APPROVER])
    same_person_new_address = await verdict(renamed, roster=enrolled, decided_by=None,
                                            not_by_staff=[data.APPROVER])
    someone_else = await verdict(APPROVER, roster=enrolled, not_by_staff=[data.REVIEWER])

    assert "four eyes" in same.reason and "four eyes" in same_person_new_address.reason
    assert someone_else.applied


async def test_the_applicant_is_a_contact_by_verified_email_or_a_listed_service():
    contact = VerifiedIdentity(issuer=ISSUER, subject="u-dev", kind="person",
                               email="dev@fintech.example.com")
    unverified = contact.model_copy(update={"email": None})
    stranger = contact.model_copy(update={"email": "someone@else.example.com"})

    assert (await verdict(contact, "applicant")).applied
    assert (await verdict(PORTAL, "applicant", decided_by=None)).applied
    assert "no verified e-mail" in (await verdict(unverified, "applicant")).reason
    assert (await verdict(stranger, "applicant")).reason == (
        "someone@else.example.com is not a registered contact of the applicant")
    assert (await verdict(PORTAL, "applicant", decided_by=None, organisation="2208162517")
            ).reason == "service developer-portal is not listed as acting for organisation 2208162517"


# --- the roster on verified identities (PostgreSQL) ----------------------------------------------


async def test_the_roster_knows_staff_by_identity_and_services_by_mandate(roster,
                                                                          identity_provider):
    approver = VerifiedIdentity(issuer=identity_provider.issuer, kind="person",
                                subject=identity_provider.subject(data.APPROVER),
                                email=data.APPROVER)
    dual = IdentityRef(issuer=identity_provider.issuer,
                       subject=identity_provider.subject(data.REVIEWER_AND_APPROVER))
    organisation = data.corporate_brn()
    await store.grant_mandate(roster, identity_provider.issuer, identity.SERVICE, organisation)
    pool_roster = store.PoolRoster(roster)

    assert await pool_roster.staff_roles(approver.ref()) == ["final_approver"]
    assert await pool_roster.staff_roles(dual) == ["final_approver", "pre_verification_reviewer"]
    assert await pool_roster.staff_roles(IdentityRef(issuer="https://elsewhere.example.com",
                                                     subject=approver.subject)) == []
    assert await store.staff_identity(roster, approver.ref()) == data.APPROVER
    assert await pool_roster.acts_for(identity_provider.issuer, identity.SERVICE, organisation)
    assert not await pool_roster.acts_for(identity_provider.issuer, identity.SERVICE,
                                          data.corporate_brn())

    seal, seals = sealer()
    content = approval()
    check = DecisionCheck(
        application_id=APPLICATION, organisation=organisation, decision="final_approval",
        decision_id="final-1", content=content, role="final_approver", received_at=NOW,
        attestation=seal.seal(approver, APPLICATION, "final_approval", "final-1", content,
                              now=NOW))
    assert (await verification.verify_decision(check, seals, pool_roster)).applied


async def test_the_compose_demo_roster_applies_and_reapplies(roster):
    """deploy/keycloak/demo-roster.sql, as an operator applies it to the cluster's database."""
    sql = (Path(__file__).resolve().parent.parent / "deploy" / "keycloak" / "demo-roster.sql"
           ).read_text()
    await roster.execute(sql)
    await roster.execute(sql)

    keycloak_approver = IdentityRef(issuer="http://localhost:8180/realms/onboarding",
                                    subject=identity.idp.subject_for(data.APPROVER))
    assert await store.staff_roles(roster, keycloak_approver) == ["final_approver"]
    assert await store.acts_for(roster, keycloak_approver.issuer, "developer-portal",
                                "1248100998")
