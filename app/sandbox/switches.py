"""The Portal's switches and the test knobs: validated models, camelCase on the wire, snake_case in Python."""

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from app.sandbox.config import SandboxConfig
from app.sandbox.platforms import PROFILES, QBO


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def merged(self, changes: Mapping[str, Any]) -> Self:
        """A copy with ``changes`` (camelCase, nested) applied on top; raises pydantic's ValidationError."""
        return self.model_validate(_deep_merge(self.to_json(), changes))


def _deep_merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _plain_text(value: str) -> str:
    # The Portal takes plain text only; refusing markup also keeps the Link page safe to render.
    if "<" in value or ">" in value:
        raise ValueError("must be plain text: '<' and '>' are not allowed")
    return value


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class CalloutText(_Wire):
    title: str = Field("", max_length=50)
    body: str = Field("", max_length=150)

    _plain = field_validator("title", "body")(_plain_text)


class Callout(_Wire):
    en: CalloutText = CalloutText(
        title="Connecting to QuickBooks",
        body="Get your one-time username and password below, then enter them in QuickBooks Online "
        "under Banking, Link account.",
    )
    fr: CalloutText = CalloutText(
        title="Connexion à QuickBooks",
        body="Obtenez vos identifiants à usage unique ci-dessous, puis saisissez-les dans "
        "QuickBooks Online sous Banque, Associer un compte.",
    )


class DataTypes(_Wire):
    bank_accounts: bool = True
    bank_transactions: bool = True


class WebhookConsumer(_Wire):
    url: str | None = None
    secret: str | None = None

    _url = field_validator("url")(_http_url)

    @field_validator("secret")
    @classmethod
    def _svix_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        key = value.removeprefix("whsec_")
        try:
            decoded = base64.b64decode(key, validate=True)
        except binascii.Error:
            decoded = b""
        if key == value or not decoded:
            raise ValueError("must be 'whsec_' followed by a base64 key")
        return value


def _other_platforms_on() -> dict[str, bool]:
    return {key: True for key in PROFILES if key != QBO.key}


class PortalSettings(_Wire):
    # QuickBooks Online Bank Feeds (hcws); ``integrations`` holds the other platforms' switches by key.
    integration_enabled: bool = True
    integrations: dict[str, bool] = Field(default_factory=_other_platforms_on)
    callout: Callout = Callout()
    data_types: DataTypes = DataTypes()
    webhook: WebhookConsumer = WebhookConsumer()
    redirect_url: str | None = None
    # Shown on the QuickBooks stand-in's "Return to <app>" link.
    app_name: str = Field("your app", min_length=1, max_length=50)

    # The fintech's login page Sage opens with ?authorizationId=…&redirectUri=… (Portal, Sage Bank Feeds).
    sage_login_url: str | None = None

    _redirect = field_validator("redirect_url", "sage_login_url")(_http_url)
    _app_name = field_validator("app_name")(_plain_text)

    @field_validator("integrations")
    @classmethod
    def _known_platforms(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(value) - set(_other_platforms_on()))
        if unknown:
            raise ValueError(f"unknown platform keys {unknown}; hcws is integrationEnabled")
        return value

    def enabled(self, platform_key: str) -> bool:
        if platform_key == QBO.key:
            return self.integration_enabled
        return self.integrations.get(platform_key, False)

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Self:
        webhook = WebhookConsumer(url=config.webhook_url, secret=config.webhook_secret)
        return cls(webhook=webhook, redirect_url=config.redirect_url)


class Knobs(_Wire):
    otp_lifetime_seconds: int = Field(3600, gt=0)
    latency_ms: int = Field(0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    # How long a timed-out request hangs before answering 504; None: until the client gives up.
    timeout_seconds: float | None = Field(10.0, ge=0)
    rate_limit_rate: float = Field(0.0, ge=0, le=1)
    retry_after_seconds: int = Field(1, ge=0)
    daily_quota: int | None = Field(None, ge=0)
    # operationIds the latency and fault rates apply to; empty means every operation.
    operations: list[str] = Field(default_factory=list)
    webhook_retry_delays_seconds: list[float] = Field(default_factory=lambda: [0.2, 1.0, 3.0])
    # How long (real seconds) a push of bank transactions stays Pending before it succeeds or fails.
    push_completion_seconds: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _rates_fit_in_one_draw(self) -> Self:
        if self.error_rate + self.timeout_rate + self.rate_limit_rate > 1:
            raise ValueError("errorRate + timeoutRate + rateLimitRate must not exceed 1")
        return self

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Self:
        return cls(
            otp_lifetime_seconds=config.otp_lifetime_seconds,
            daily_quota=config.daily_quota,
            webhook_retry_delays_seconds=config.webhook_retry_delays_seconds,
        )

    def applies_to(self, operation_id: str) -> bool:
        return not self.operations or operation_id in self.operations
