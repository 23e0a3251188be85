"""The OpenAPI document of a publication: checked offline, refused with findings that say where."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onboarding.domain.openapi import (
    MAX_LISTED,
    SpecFindings,
    SpecSummary,
    check_openapi,
    validation_findings,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
F = "api.specification"


def example() -> dict[str, Any]:
    return json.loads((EXAMPLES / "publication.json").read_text(encoding="utf-8"))


def spec() -> dict[str, Any]:
    return example()["specification"]


def findings_of(document: object, field: str = F) -> list[str]:
    with pytest.raises(SpecFindings) as refused:
        check_openapi(document, field)
    assert refused.value.findings, "a refusal always says why"
    return refused.value.findings


def reordered(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


# --- accepted ----------------------------------------------------------------------------------


def test_example_specification_is_accepted_with_its_summary() -> None:
    document = spec()
    summary = check_openapi(document)
    assert isinstance(summary, SpecSummary)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert summary == SpecSummary(
        openapi_version="3.0.3",
        title="Bond yields",
        version="1.0.0",
        operation_count=1,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    )
    with pytest.raises(AttributeError):
        summary.version = "2.0.0"  # type: ignore[misc]


def test_example_is_a_publication_form_like_the_subscription_example() -> None:
    from onboarding.domain.models import PublicationForm

    publication = example()
    subscription = json.loads((EXAMPLES / "subscription.json").read_text(encoding="utf-8"))
    assert publication["organisation"].keys() == subscription["organisation"].keys()
    form = PublicationForm.model_validate(publication)
    assert form.api.api_id == "bond-yields" and form.api.is_market_data
    assert form.organisation.business_registration_number == "134-86-72683"


def test_openapi_3_1_is_accepted() -> None:
    document = spec()
    document["openapi"] = "3.1.0"
    summary = check_openapi(document)
    assert summary.openapi_version == "3.1.0"
    assert summary.operation_count == 1


def test_operations_are_counted_across_paths_and_methods() -> None:
    document = spec()
    document["paths"]["/bond-yields/{tenor}"] = {
        "parameters": [{"name": "tenor", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "get": {"responses": {"200": {"description": "One tenor"}}},
        "delete": {"responses": {"204": {"description": "Gone"}}},
    }
    assert check_openapi(document).operation_count == 3


# --- the digest --------------------------------------------------------------------------------


def test_key_order_and_formatting_do_not_change_the_digest() -> None:
    document = spec()
    shuffled = reordered(document)
    assert list(shuffled) != list(document)
    reparsed = json.loads(json.dumps(shuffled, indent=4))
    digests = {check_openapi(d).sha256 for d in (document, shuffled, reparsed)}
    assert len(digests) == 1


def test_a_changed_document_has_another_digest() -> None:
    document = spec()
    changed = spec()
    changed["paths"]["/bond-yields"]["get"]["summary"] = "Yields of one trading day (KST)"
    assert check_openapi(document).sha256 != check_openapi(changed).sha256


def test_non_ascii_text_is_digested_as_utf8() -> None:
    document = spec()
    document["info"]["title"] = "채권 수익률"
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    summary = check_openapi(document)
    assert summary.title == "채권 수익률"
    assert summary.sha256 == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- refused -----------------------------------------------------------------------------------

GET = "paths./bond-yields.get"


def _drop_info(d: dict) -> None:
    del d["info"]


def _response_without_description(d: dict) -> None:
    del d["paths"]["/bond-yields"]["get"]["responses"]["404"]["description"]


def _paths_as_list(d: dict) -> None:
    d["paths"] = ["/bond-yields"]


def _ref_to_missing_component(d: dict) -> None:
    del d["components"]["schemas"]["BondYield"]


def _empty_info_version(d: dict) -> None:
    d["info"]["version"] = "  "


def _no_paths(d: dict) -> None:
    d["paths"] = {}


def _no_paths_in_3_1(d: dict) -> None:
    d["openapi"] = "3.1.0"
    del d["paths"]


def _path_items_without_operations(d: dict) -> None:
    d["paths"] = {"/bond-yields": {"summary": "nothing to call"}}


def _response_without_description_3_1(d: dict) -> None:
    d["openapi"] = "3.1.0"
    del d["paths"]["/bond-yields"]["get"]["responses"]["200"]["description"]


def _parameter_in_body(d: dict) -> None:
    d["paths"]["/bond-yields"]["get"]["parameters"][0]["in"] = "body"


def _circular_ref(d: dict) -> None:
    d["components"]["schemas"]["BondYield"] = {"$ref": "#/components/schemas/BondYield"}


def _yaml_integer_status_code(d: dict) -> None:
    responses = d["paths"]["/bond-yields"]["get"]["responses"]
    responses[200] = responses.pop("200")


def _unsupported_version(d: dict) -> None:
    d["openapi"] = "3.2.0"


def _missing_version(d: dict) -> None:
    del d["openapi"]


def _swagger_2(d: dict) -> None:
    d.clear()
    d.update({"swagger": "2.0", "info": {"title": "Bond yields", "version": "1.0.0"},
              "paths": {"/bond-yields": {"get": {"responses": {"200": {"description": "ok"}}}}}})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop_info, f"{F}: 'info' is a required property"),
        (_response_without_description,
         f"{F}.{GET}.responses.404: 'description' is a required property"),
        (_response_without_description_3_1,
         f"{F}.{GET}.responses.200: 'description' is a required property"),
        (_paths_as_list, f"{F}.paths: ['/bond-yields'] is not of type 'object'"),
        (_ref_to_missing_component,
         (f"{F}.components.schemas.BondYields.properties.yields.items.$ref: "
          "reference '#/components/schemas/BondYield' points to nothing in the document")),
        (_circular_ref,
         (f"{F}.components.schemas.BondYield.$ref: "
          "reference '#/components/schemas/BondYield' is circular")),
        (_parameter_in_body, f"{F}.{GET}.parameters.0: an object is not valid under any"),
        (_empty_info_version, f"{F}.info.version: must not be empty"),
        (_no_paths, f"{F}.paths: no paths"),
        (_no_paths_in_3_1, f"{F}.paths: no paths"),
        (_path_items_without_operations, f"{F}.paths: no operations"),
        (_yaml_integer_status_code, f"{F}.{GET}.responses: key 200 is not a string"),
        (_swagger_2, f"{F}.swagger: Swagger '2.0' is not accepted; an OpenAPI 3.x document"),
        (_unsupported_version, f"{F}.openapi: '3.2.0' is not supported"),
        (_missing_version, f"{F}.openapi: missing; an OpenAPI 3.x document is required"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_invalid_documents_are_refused_naming_the_path(
    mutate: Callable[[dict], None], expected: str
) -> None:
    document = spec()
    mutate(document)
    findings = findings_of(document)
    assert any(f.startswith(expected) for f in findings), findings


@pytest.mark.parametrize("document", [["openapi", "3.0.3"], "openapi: 3.0.3", None, 3])
def test_anything_but_an_object_is_refused(document: object) -> None:
    [finding] = findings_of(document)
    assert finding.startswith(f"{F}: must be an OpenAPI document (a JSON object)")


def test_findings_are_prefixed_with_the_field_given() -> None:
    document = spec()
    _response_without_description(document)
    assert findings_of(document, "specification") == [
        f"specification.{GET}.responses.404: 'description' is a required property"
    ]


def test_findings_are_sorted_deduplicated_and_capped() -> None:
    document = spec()
    for i in range(MAX_LISTED + 10):
        document["paths"][f"/broken-{i:02d}"] = {"get": {"responses": {"200": {}, "404": {}}}}
    with pytest.raises(SpecFindings) as refused:
        check_openapi(document)
    error = refused.value
    listed, more = error.findings[:-1], error.findings[-1]
    assert len(listed) == MAX_LISTED and listed == sorted(set(listed))
    assert error.omitted == 2 * (MAX_LISTED + 10) - MAX_LISTED
    assert more == f"{F}: {error.omitted} more findings not listed"
    assert isinstance(error, ValueError)
    assert all(f in str(error) for f in error.findings)


def test_a_document_that_is_not_json_is_refused() -> None:
    from datetime import date

    document = spec()
    document["info"]["version"] = date(2026, 11, 30)  # YAML's unquoted 2026-11-30
    document["info"]["x-ratio"] = float("nan")
    assert findings_of(document) == [
        f"{F}.info.version: a date is not a JSON value (quote it if it came from YAML)",
        f"{F}.info.x-ratio: nan is not a JSON number",
    ]


def test_validators_are_not_kept_alive_after_a_check() -> None:
    from openapi_spec_validator import OpenAPIV30SpecValidator

    cache = getattr(OpenAPIV30SpecValidator.iter_errors, "__wrapped__", None)
    if not hasattr(cache, "cache_info"):
        pytest.skip("this openapi-spec-validator does not memoise iter_errors")
    check_openapi(spec())
    findings_of({**spec(), "info": {}})
    assert cache.cache_info().currsize == 0


# --- nothing is ever fetched -------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket: a fetch of a reference to it would be accepted here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock
        with pytest.raises(BlockingIOError):
            sock.accept()  # nobody connected


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every name lookup or connection attempted during the test. Those to 127.0.0.1 go
    through, so that `listener` would see them; any other fails at once."""
    attempts: list[tuple] = []

    def spy(owner: Any, name: str, host_of: Callable[..., str]) -> None:
        original = getattr(owner, name)

        def attempt(*args: Any, **kwargs: Any) -> Any:
            attempts.append((name, args))
            if host_of(*args) == "127.0.0.1":
                return original(*args, **kwargs)
            raise OSError(f"test: no {name} to anything but 127.0.0.1")

        monkeypatch.setattr(owner, name, attempt)

    spy(socket, "getaddrinfo", lambda host, *_: host)
    spy(socket, "create_connection", lambda address, *_: address[0])
    spy(socket.socket, "connect", lambda sock, address: address[0])
    spy(socket.socket, "connect_ex", lambda sock, address: address[0])
    return attempts


def _remote_refs(port: int, tmp_path: Path) -> list[str]:
    local_file = tmp_path / "bond-yield.json"
    local_file.write_text(json.dumps({"Foo": {"type": "object"}}), encoding="utf-8")
    return [
        f"http://127.0.0.1:{port}/x.json#/Foo",
        f"https://127.0.0.1:{port}/x.json#/Foo",
        "http://schemas.korea-quotes.example.com/bond-yield.json#/Foo",
        local_file.as_uri() + "#/Foo",  # exists and is valid: must not be read either
        "bond-yield.json#/Foo",
    ]


ITEMS = "components.schemas.BondYields.properties.yields.items"


@pytest.mark.parametrize("minor", [0, 1])
@pytest.mark.parametrize("which", range(5))
def test_a_remote_ref_is_refused_without_any_network_access(
    listener: socket.socket, network_attempts: list, tmp_path: Path, minor: int, which: int
) -> None:
    ref = _remote_refs(listener.getsockname()[1], tmp_path)[which]
    document = spec()
    document["openapi"] = f"3.{minor}.3"
    document["components"]["schemas"]["BondYields"]["properties"]["yields"]["items"] = {
        "$ref": ref}

    started = time.monotonic()
    findings = findings_of(document)
    assert time.monotonic() - started < 2

    assert findings == [
        (f"{F}.{ITEMS}.$ref: external reference {ref!r} is not allowed; the specification "
         "must be self-contained (only '#/...' references)")
    ]
    assert network_attempts == []


@pytest.mark.parametrize("minor", [0, 1])
@pytest.mark.parametrize("which", range(5))
def test_the_validator_itself_cannot_fetch_a_remote_ref(
    listener: socket.socket, network_attempts: list, tmp_path: Path, minor: int, which: int
) -> None:
    """Second line: the validator's resolver refuses every scheme, even if our own check of
    references were bypassed."""
    ref = _remote_refs(listener.getsockname()[1], tmp_path)[which]
    document = spec()
    document["openapi"] = f"3.{minor}.3"
    document["components"]["schemas"]["BondYields"]["properties"]["yields"]["items"] = {
        "$ref": ref}

    started = time.monotonic()
    findings = validation_findings(document, minor, F)
    assert time.monotonic() - started < 2

    assert findings == [
        f"{F}.{ITEMS}.$ref: reference {ref!r} cannot be resolved within the document"
    ]
    assert network_attempts == []


def test_remote_dialects_in_3_1_are_refused_without_network_access(
    listener: socket.socket, network_attempts: list
) -> None:
    remote = f"http://127.0.0.1:{listener.getsockname()[1]}/dialect"
    document = spec()
    document["openapi"] = "3.1.0"
    document["jsonSchemaDialect"] = remote
    document["components"]["schemas"]["BondYield"]["$schema"] = remote
    document["components"]["schemas"]["BondYields"]["$id"] = remote + "/schemas/"

    started = time.monotonic()
    findings = findings_of(document)
    assert time.monotonic() - started < 2
    assert f"{F}: Unknown JSON Schema dialect: {remote!r}" in findings
    assert network_attempts == []
