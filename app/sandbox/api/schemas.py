"""Request bodies of the Codat operations, with Codat's rules (Codat-Bank-Feeds.json)."""

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from app.sandbox.currencies import ISO_4217
from app.sandbox.errors import from_validation_error, invalid
from app.sandbox.responses import parse_json

# Codat's name pattern is ^[A-Za-z0-9\s\-',&@.,?!\s]+$; anything else is removed, not refused.
_NOT_IN_NAME_PATTERN = re.compile(r"[^A-Za-z0-9\s\-',&@.?!]")

TagKey = Annotated[str, StringConstraints(min_length=1, max_length=27)]
TagValue = Annotated[str, StringConstraints(max_length=100)]


def _json_number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


Number = Annotated[int | float, PlainValidator(_json_number)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, strict=True)


BodyT = TypeVar("BodyT", bound=BaseModel)


class CompanyRequest(_Body):
    name: str
    description: str | None = None
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=10)

    @field_validator("name")
    @classmethod
    def _remove_forbidden_characters(cls, name: str) -> str:
        cleaned = _NOT_IN_NAME_PATTERN.sub("", name)
        if not cleaned.strip():
            raise ValueError("must contain at least one letter, digit or allowed punctuation")
        return cleaned


class ConnectionRequest(_Body):
    platform_key: Annotated[str, StringConstraints(pattern=r"^[a-z]{4}$")]


class ConnectionUpdate(_Body):
    model_config = ConfigDict(extra="forbid")
    status: Literal["Unlinked"]


class RoutingInfo(_Body):
    bank_code: str | None = None
    type: (
        Literal[
            "rtn",
            "aba",
            "swift",
            "bsb",
            "iban",
            "nz2",
            "trno",
            "sortcode",
            "blz",
            "ifsc",
            "bankcode",
            "apca",
            "clabe",
        ]
        | None
    ) = "bankcode"


class AccountInfo(_Body):
    description: str | None = None
    nickname: str | None = None
    account_open_date: str | None = None
    available_balance: Number | None = None

    @field_validator("account_open_date")
    @classmethod
    def _is_date(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)
        return value


class SourceAccountV2Prototype(_Body):
    id: NonEmpty
    account_name: NonEmpty
    account_type: Literal["checking", "savings", "loan", "creditCard", "prepaidCard"]
    account_number: NonEmpty
    currency: str
    balance: Number
    routing_info: RoutingInfo | None = None
    sort_code: str | None = None
    modified_date: str | None = None
    account_info: AccountInfo | None = None

    @field_validator("currency")
    @classmethod
    def _is_iso_4217(cls, value: str) -> str:
        if value not in ISO_4217:
            raise ValueError("must be an ISO 4217 currency code, e.g. USD")
        return value

    @field_validator("modified_date")
    @classmethod
    def _is_datetime(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value)
        return value


class SourceAccountV1Update(_Body):
    """The PATCH body: Codat's v1 SourceAccount (additionalProperties: false, only ``id`` required)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    account_name: str | None = None
    account_type: str | None = None
    account_number: str | None = None
    sort_code: str | None = None
    currency: str | None = None
    balance: Number | None = None
    modified_date: str | None = None
    status: Literal["pending", "connected", "connecting", "disconnected", "unknown"] | None = None
    feed_start_date: str | None = None


class BankFeedAccountMapping(_Body):
    """Codat's BankFeedAccountMapping (additionalProperties: false)."""

    model_config = ConfigDict(extra="forbid")
    source_account_id: str
    target_account_id: str | None = None
    feed_start_date: str | None = None

    @field_validator("feed_start_date")
    @classmethod
    def _is_datetime(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value)
        return value


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return parse_json(raw)
    except ValueError:
        raise invalid(
            "The request body is not valid JSON.", item_id=None, validator="JsonValidator"
        ) from None


def parse(model: type[BodyT], data: Any, *, validator: str) -> BodyT:
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.", item_id=None, validator=validator)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, validator=validator) from None


async def parse_body(request: Request, model: type[BodyT], *, validator: str) -> BodyT:
    return parse(model, await read_json(request), validator=validator)
