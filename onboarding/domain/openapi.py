"""The OpenAPI document a member company submits with its API: checked, offline, and summarised.

`check_openapi` accepts an OpenAPI 3.0.x or 3.1.x document (already parsed from JSON or YAML)
and returns what the catalogue records about it, or refuses it with every finding, each naming
where in the document it is (`api.specification.paths./quotes.get.responses: ...`).

Pure and offline. A submitted document must never make this process reach out: only local
references (`#/...`) are accepted, and the validator is given resolver handlers that refuse
every URI scheme, so even a reference that slipped past our own check is not fetched (no
HTTP, no DNS lookup, no `file://` read).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote

from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

MAX_LISTED = 50
"""Findings listed in a refusal; the rest are counted."""

MAX_DEPTH = 64
"""Nesting deeper than this is refused before validation (real documents stay far below)."""

MAX_MESSAGE = 300

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_SUPPORTED_VERSION = re.compile(r"3\.([01])\.\d+(-.+)?")


class SpecFindings(ValueError):
    """An OpenAPI document refused. `findings` are `"<field>.<path>: <message>"`, sorted and
    deduplicated; past `MAX_LISTED` the last one says how many more there are (`omitted`)."""

    def __init__(self, findings: Sequence[str], field: str = "api.specification") -> None:
        distinct = sorted(set(findings))
        listed = distinct[:MAX_LISTED]
        self.omitted = len(distinct) - len(listed)
        if self.omitted:
            listed.append(f"{field}: {self.omitted} more findings not listed")
        self.findings: list[str] = listed
        super().__init__(
            "OpenAPI specification refused:\n" + "\n".join(f"  - {f}" for f in listed)
        )


@dataclass(frozen=True)
class SpecSummary:
    openapi_version: str  # as written, e.g. "3.0.3"
    title: str  # info.title
    version: str  # info.version
    operation_count: int  # operations under `paths` (3.1 webhooks not counted)
    sha256: str  # hex digest of canonical_json(document)


def canonical_json(document: Any) -> bytes:
    """The same document, whatever its key order or whitespace, gives the same bytes."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def check_openapi(document: object, field: str = "api.specification") -> SpecSummary:
    """Check a parsed OpenAPI 3.0.x/3.1.x document; refuse it with `SpecFindings`."""
    if not isinstance(document, dict):
        raise SpecFindings(
            [f"{field}: must be an OpenAPI document (a JSON object), not {_describe(document)}"],
            field,
        )

    findings = list(_json_findings(document, field))
    if findings:
        # Keys or values JSON cannot carry: the stored document and its digest would differ.
        raise SpecFindings(findings, field)

    version_text, minor, version_findings = _version(document, field)
    if version_findings:
        raise SpecFindings(version_findings, field)

    ref_findings = _reference_findings(document, field)
    findings += ref_findings
    if not ref_findings:
        # The validator stops at the first reference it cannot resolve; references are ours.
        findings += validation_findings(document, minor, field)
    findings += _platform_findings(document, field)
    if findings:
        raise SpecFindings(findings, field)

    info = document["info"]
    return SpecSummary(
        openapi_version=version_text,
        title=info["title"],
        version=info["version"],
        operation_count=_operation_count(document),
        sha256=hashlib.sha256(canonical_json(document)).hexdigest(),
    )


# --- JSON shape --------------------------------------------------------------------------------


def _json_findings(document: Mapping[str, Any], field: str) -> Iterator[str]:
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (str, bool, int)) or value is None:
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                yield f"{_location(field, path)}: {value!r} is not a JSON number"
            continue
        if not isinstance(value, (dict, list)):
            yield (f"{_location(field, path)}: {_describe(value)} is not a JSON value "
                   "(quote it if it came from YAML)")
            continue
        if len(path) >= MAX_DEPTH:
            yield f"{_location(field, path)}: nested more than {MAX_DEPTH} levels deep"
            continue
        if isinstance(value, list):
            stack.extend((path + (i,), item) for i, item in enumerate(value))
            continue
        for key, item in value.items():
            if not isinstance(key, str):
                yield (f"{_location(field, path)}: key {key!r} is not a string "
                       "(quote it if it came from YAML)")
            else:
                stack.append((path + (key,), item))


# --- version -----------------------------------------------------------------------------------


def _version(document: Mapping[str, Any], field: str) -> tuple[str, int, list[str]]:
    required = "an OpenAPI 3.x document is required (3.0.x or 3.1.x)"
    if "openapi" not in document:
        if "swagger" in document:
            swagger = document["swagger"]
            return "", 0, [f"{field}.swagger: Swagger {swagger!r} is not accepted; {required}"]
        return "", 0, [f"{field}.openapi: missing; {required}"]
    version = document["openapi"]
    match = _SUPPORTED_VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        return "", 0, [f"{field}.openapi: {version!r} is not supported; {required}"]
    return version, int(match.group(1)), []


# --- references --------------------------------------------------------------------------------


def _references(document: Mapping[str, Any]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every `$ref` string in the document, with the path of the object holding it."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            ref = value.get("$ref")
            if isinstance(ref, str):
                yield path, ref
            stack.extend((path + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((path + (i,), v) for i, v in enumerate(value))


_NOWHERE = object()


def _pointer_target(document: Mapping[str, Any], ref: str) -> Any:
    """What a `#/...` reference points to, `_NOWHERE` if nothing, None for a `#name` anchor."""
    fragment = unquote(ref[1:])
    if fragment == "":
        return document
    if not fragment.startswith("/"):
        return None  # a 3.1 `$anchor`: left to the validator
    node: Any = document
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _NOWHERE
    return node


def _reference_findings(document: Mapping[str, Any], field: str) -> list[str]:
    findings = []
    for path, ref in _references(document):
        where = _location(field, path + ("$ref",))
        if not ref.startswith("#"):
            findings.append(f"{where}: external reference {ref!r} is not allowed; the "
                            "specification must be self-contained (only '#/...' references)")
            continue
        seen = {ref}
        target = _pointer_target(document, ref)
        while isinstance(target, Mapping) and isinstance(target.get("$ref"), str):
            following = target["$ref"]
            if following in seen:
                findings.append(f"{where}: reference {ref!r} is circular")
                break
            seen.add(following)
            target = _pointer_target(document, following) if following.startswith("#") else None
        if target is _NOWHERE:
            findings.append(f"{where}: reference {ref!r} points to nothing in the document")
    return findings


def _refuse_retrieval(uri: str) -> NoReturn:
    raise LookupError(f"not retrieved: {uri} (only references within the document are allowed)")


class _NoRetrieval(Mapping[str, Callable[[str], Any]]):
    """Resolver handlers that claim every URI scheme and refuse them all.

    jsonschema-path falls back to urllib (or requests) for a scheme it has no handler for, so
    leaving handlers out, or passing an empty mapping, would still fetch: this one has a
    handler for every scheme, and that handler raises.
    """

    def __getitem__(self, scheme: str) -> Callable[[str], Any]:
        return _refuse_retrieval

    def __contains__(self, scheme: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _OfflineV30Validator(OpenAPIV30SpecValidator):
    resolver_handlers = _NoRetrieval()


class _OfflineV31Validator(OpenAPIV31SpecValidator):
    resolver_handlers = _NoRetrieval()


# openapi-spec-validator memoises `iter_errors` per validator instance in an unbounded
# lru_cache, which would keep every checked document alive in a long-running worker.
_iter_errors_cache_clear = getattr(
    getattr(OpenAPIV30SpecValidator.iter_errors, "__wrapped__", None), "cache_clear", None
)


# --- the validator -----------------------------------------------------------------------------


def validation_findings(document: Mapping[str, Any], minor: int, field: str) -> list[str]:
    """The validator's findings for a 3.`minor` document. Nothing is ever retrieved: a
    reference outside the document is a finding."""
    cls = _OfflineV30Validator if minor == 0 else _OfflineV31Validator
    validator = cls(document)
    findings: list[str] = []
    try:
        for error in validator.iter_errors():
            findings += _error_findings(error, field)
    except Exception as exc:  # noqa: BLE001 - it raises, not reports, on some invalid documents
        ref = getattr(exc, "ref", None)
        if isinstance(ref, str):  # referencing.exceptions.Unresolvable
            anchor = getattr(exc, "anchor", None)  # NoSuchAnchor: ref is the base, '' here
            if isinstance(anchor, str):
                ref = f"{ref}#{anchor}"
            holders = [p + ("$ref",) for p, r in _references(document) if r == ref] or [()]
            findings += [
                f"{_location(field, p)}: reference {ref!r} cannot be resolved within the document"
                for p in holders
            ]
        elif not findings:
            # Never accepted unchecked.
            findings.append(f"{field}: could not be checked ({type(exc).__name__}: "
                            f"{_truncate(str(exc))})")
    finally:
        del validator
        if _iter_errors_cache_clear is not None:
            _iter_errors_cache_clear()
    return findings


def _error_findings(error: Any, field: str) -> list[str]:
    branches = _relevant_branches(error)
    if len(branches) == 1:
        # One alternative of a oneOf/anyOf applies (the others are e.g. a Reference Object
        # this value is not): its own errors say what is wrong.
        return [f for sub in branches[0] for f in _error_findings(sub, field)]
    message = _message(error)
    if branches:
        tried = " | ".join(", ".join(_message(e) for e in branch) for branch in branches)
        message = f"{message} (tried: {tried})"
    return [f"{_location(field, tuple(error.absolute_path))}: {_truncate(message)}"]


def _relevant_branches(error: Any) -> list[list[Any]]:
    """The failed alternatives of a oneOf/anyOf error, without a Reference alternative when
    the value is not a reference."""
    branches: dict[Any, list[Any]] = {}
    for sub in getattr(error, "context", None) or ():
        key = sub.relative_schema_path[0] if sub.relative_schema_path else None
        branches.setdefault(key, []).append(sub)
    instance = error.instance
    relevant = [
        branch
        for branch in branches.values()
        if not (
            isinstance(instance, Mapping)
            and "$ref" not in instance
            and any(e.validator == "required" and "$ref" in (e.validator_value or ())
                    for e in branch)
        )
    ]
    return relevant or list(branches.values())


def _message(error: Any) -> str:
    message = str(error.message)
    try:
        shown = repr(error.instance)
    except Exception:  # noqa: BLE001 - an unset instance
        return message
    if len(shown) > 60 and message.startswith(shown):
        message = _describe(error.instance) + message[len(shown):]
    return message


# --- the platform's own rules ------------------------------------------------------------------


def _platform_findings(document: Mapping[str, Any], field: str) -> list[str]:
    findings = []
    info = document.get("info")
    if isinstance(info, Mapping):
        version = info.get("version")
        if isinstance(version, str) and not version.strip():
            findings.append(f"{field}.info.version: must not be empty; the catalogue is "
                            "versioned by it")
    paths = document.get("paths")
    if paths is None or (isinstance(paths, Mapping) and not paths):
        findings.append(f"{field}.paths: no paths; the specification must describe at least "
                        "one operation")
    elif isinstance(paths, Mapping) and _operation_count(document) == 0:
        findings.append(f"{field}.paths: no operations; the specification must describe at "
                        "least one operation")
    return findings


def _operation_count(document: Mapping[str, Any]) -> int:
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        return 0
    count = 0
    for item in paths.values():
        if isinstance(item, Mapping) and isinstance(item.get("$ref"), str) and \
                item["$ref"].startswith("#"):
            target = _pointer_target(document, item["$ref"])
            item = target if isinstance(target, Mapping) else item
        if isinstance(item, Mapping):
            count += sum(1 for method in HTTP_METHODS if isinstance(item.get(method), Mapping))
    return count


# --- wording -----------------------------------------------------------------------------------


def _location(field: str, path: Sequence[Any]) -> str:
    return ".".join([field, *(str(p) for p in path)])


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
