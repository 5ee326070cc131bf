"""Contract checks against Codat's own OpenAPI files (``spec/codat/`` in this repository).

Every JSON body answered on a Codat path must validate against the schema the spec declares for that
operation and status: Codat-Bank-Feeds.json first, Codat-Platform.json for what it alone has (integrations,
profile). Two ways in:

- ``validate_response(method, path, status, body, content_type)`` raises ``ContractViolation``;
- ``contract_checked(app)`` wraps any ASGI app (the sandbox, or the BFF with the sandbox mounted under a
  prefix: pass ``prefix="/sandbox"``) and records violations on ``.violations`` instead of raising, because a
  server running in a thread (uvicorn) would swallow the exception after the response went out. Attributes
  of the wrapped app (``.state``) stay reachable. Assert ``wrapped.violations == []`` in a fixture's teardown.

``validate_webhook(event)`` checks a webhook envelope against the spec's ``webhooks`` section.

How the OpenAPI 3.1 files, written in the 3.0 style, are read as JSON Schema 2020-12:
- ``nullable: true`` becomes ``"null"`` added to ``type`` (and ``None`` to ``enum``), or an ``anyOf`` with
  ``{"type": "null"}`` for untyped nodes such as a ``$ref``, so ``$ref`` pointers into the files stay valid;
- ``oneOf`` becomes ``anyOf``: Codat offers v1 and v2 source accounts as ``oneOf``, and a v2 account with no
  v2-only field set is also a valid v1 account, so "exactly one" would refuse Codat's own examples;
- ``format`` is not asserted (no format checker): Codat's formats include non-standard ones (``ISO4217``,
  ``decimal``), and the SDK tests check what clients really parse.
- An error status the operation does not declare must still be Codat's ErrorMessage (Codat says every error
  uses it); an undeclared success status is a violation. With ``strict_errors`` (default), every error body
  must also carry its ``statusCode`` and a ``correlationId``.
"""

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILES = ("Codat-Bank-Feeds.json", "Codat-Platform.json")
_ERROR_MESSAGE = "/components/schemas/ErrorMessage"
_METHODS = {"get", "put", "post", "patch", "delete"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class ContractViolation(AssertionError):
    pass


SPEC_DIR = Path(__file__).resolve().parent.parent / "spec" / "codat"
"""Codat's OpenAPI files, committed unmodified (their source and checksums: ``spec/codat/SOURCE.txt``)."""


@dataclass(frozen=True)
class _Spec:
    uri: str
    document: dict[str, Any]
    templates: tuple[tuple[re.Pattern[str], str, int], ...]  # (regex, path template, literal segments)


@dataclass(frozen=True)
class _Operation:
    spec: _Spec
    template: str
    method: str
    definition: dict[str, Any] | None  # None: the path exists but not with this method


def _as_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if "oneOf" in converted:
        converted["anyOf"] = converted.pop("oneOf")
    return _allow_null(converted) if node.get("nullable") is True else converted


def _allow_null(node: dict[str, Any]) -> dict[str, Any]:
    if "type" not in node:
        return {"anyOf": [node, {"type": "null"}]}
    types = node["type"] if isinstance(node["type"], list) else [node["type"]]
    node["type"] = [*types, "null"]
    if "enum" in node:
        node["enum"] = [*node["enum"], None]
    return node


def _template_regex(template: str) -> tuple[re.Pattern[str], str, int]:
    segments = template.strip("/").split("/")
    pattern = "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segments)
    literals = sum(not s.startswith("{") for s in segments)
    return re.compile(f"^/{pattern}/?$"), template, literals


@cache
def _specs() -> tuple[_Spec, ...]:
    specs = []
    for name in SPEC_FILES:
        document = _as_json_schema(json.loads((SPEC_DIR / name).read_text(encoding="utf-8")))
        templates = tuple(_template_regex(t) for t in document.get("paths", {}))
        specs.append(_Spec(f"urn:codat:{name}", document, templates))
    return tuple(specs)


@cache
def _registry() -> Registry:
    resources = [
        (s.uri, Resource.from_contents(s.document, default_specification=DRAFT202012)) for s in _specs()
    ]
    return Registry().with_resources(resources)


@cache
def _validator(uri: str, pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=_registry())


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for token in pointer.lstrip("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def find_operation(method: str, path: str) -> _Operation | None:
    """The spec operation for a request path (most literal segments wins), or None if no spec has the path."""
    matches = [
        (literals, -order, spec, template)
        for order, spec in enumerate(_specs())
        for regex, template, literals in spec.templates
        if regex.match(path)
    ]
    if not matches:
        return None
    *_, spec, template = max(matches, key=lambda m: (m[0], m[1]))
    definition = spec.document["paths"][template].get(method.lower())
    return _Operation(spec, template, method.lower(), definition if method.lower() in _METHODS else None)


def _response_pointer(operation: _Operation, status: int) -> str | None:
    """JSON pointer to the response's JSON schema; None when the declared response has no body."""
    responses = (operation.definition or {}).get("responses", {})
    key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
    if key is None:
        if status < 400:
            raise ContractViolation(
                f"{operation.method.upper()} {operation.template} does not declare {status}"
            )
        return _ERROR_MESSAGE
    pointer = f"/paths/{_escape(operation.template)}/{operation.method}/responses/{key}"
    response = responses[key]
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
        response = _resolve(operation.spec.document, pointer)
    if "schema" not in response.get("content", {}).get("application/json", {}):
        return None
    return f"{pointer}/content/application~1json/schema"


def validate_response(
    method: str,
    path: str,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    *,
    strict_errors: bool = True,
) -> None:
    """Raise ContractViolation if the response breaks Codat's spec; paths no spec has are not checked."""
    operation = find_operation(method, path)
    if operation is None:
        return
    where = f"{method.upper()} {path} -> {status}"
    pointer = _response_pointer(operation, status)
    if pointer is None:
        if body.strip():
            raise ContractViolation(f"{where}: the spec declares no body, got {body[:200]!r}")
        return
    if not content_type.startswith("application/json"):
        raise ContractViolation(f"{where}: expected application/json, got {content_type!r}")
    try:
        data = json.loads(body)
    except ValueError:
        raise ContractViolation(f"{where}: body is not JSON: {body[:200]!r}") from None
    _check(_validator(operation.spec.uri, pointer), data, where)
    if strict_errors and _is_error_message(operation.spec, pointer):
        _check_error_identity(data, status, where)


def _is_error_message(spec: _Spec, pointer: str) -> bool:
    return pointer == _ERROR_MESSAGE or _resolve(spec.document, pointer) == {"$ref": f"#{_ERROR_MESSAGE}"}


def _check(validator: Draft202012Validator, data: Any, where: str) -> None:
    error = best_match(validator.iter_errors(data))
    if error is not None:
        location = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ContractViolation(f"{where}: {location}: {error.message}")


def _check_error_identity(data: Any, status: int, where: str) -> None:
    if not isinstance(data, dict) or data.get("statusCode") != status or not data.get("correlationId"):
        raise ContractViolation(
            f"{where}: an error must carry statusCode {status} and a correlationId: {data}"
        )


def validate_webhook(event: dict[str, Any]) -> None:
    """Check a webhook envelope ``{id, eventType, generatedDate, payload}`` against its event's schema."""
    name = str(event.get("eventType"))
    # Codat-Platform.json declares the write events once, as `{dataType}.write.successful|unsuccessful`.
    candidates = (name, re.sub(r"^\w+\.write\.", "{dataType}.write.", name))
    for spec in _specs():
        declared = next((c for c in candidates if c in spec.document.get("webhooks", {})), None)
        if declared:
            pointer = f"/webhooks/{_escape(declared)}/post/requestBody/content/application~1json/schema"
            _check(_validator(spec.uri, pointer), event, f"webhook {name}")
            return
    raise ContractViolation(f"no spec declares the webhook event {name!r}")


class ContractChecked:
    """An ASGI app that validates every response of the app it wraps; see ``violations``."""

    def __init__(self, app: ASGIApp, *, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.violations: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if start:
            self._check(scope, start, bytes(body))

    def _check(self, scope: Scope, start: Message, body: bytes) -> None:
        path = scope["path"].removeprefix(scope.get("root_path", ""))  # mounted apps see the full path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return
            path = path.removeprefix(self.prefix)
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        try:
            validate_response(scope["method"], path, start["status"], body, headers.get("content-type", ""))
        except ContractViolation as exc:
            self.violations.append(str(exc))


def contract_checked(app: ASGIApp, *, prefix: str = "") -> ContractChecked:
    return ContractChecked(app, prefix=prefix)
