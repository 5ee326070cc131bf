"""One Settings object for the whole service.

Environment variables use the ``BANKFEEDS_`` prefix and ``__`` for nesting, e.g.
``BANKFEEDS_DATABASE__URL`` or ``BANKFEEDS_CODAT__API_KEY``. Precedence: environment, then ``.env``, then
the defaults below. Secrets are ``SecretStr`` and have no usable default outside ``dev``/``test``.
"""

from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Known, non-secret values used only by `dev` and the tests; production refuses them.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
DEV_SANDBOX_API_KEY = "sandbox-dev-api-key"
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc="
DEV_EVENTS_KEY = "ZGV2LW9ubHktZXZlbnRzLWtleS0wMTIzNDU2Nzg5YWI="  # a Fernet key (32 bytes, urlsafe base64)


class Environment(StrEnum):
    dev = "dev"
    test = "test"
    prod = "prod"


class DatabaseSettings(BaseModel):
    url: str = Field(
        "sqlite+aiosqlite:///./bankfeeds-dev.sqlite3",
        description="SQLAlchemy async URL: postgresql+asyncpg://… in production, sqlite+aiosqlite://… for dev.",
    )
    pool_size: int = Field(10, ge=1, description="Postgres connections kept per process.")
    max_overflow: int = Field(5, ge=0, description="Extra connections allowed under bursts.")
    command_timeout_seconds: float = Field(10.0, gt=0, description="asyncpg per-statement timeout.")


class CodatSettings(BaseModel):
    base_url: str = Field("https://api.codat.io", description="Codat API root; the sandbox's URL in dev.")
    api_key: SecretStr | None = Field(None, description="Codat API key (raw, not base64). Required in prod.")
    platform_key: str = Field("hcws", description="QuickBooks Online Bank Feeds integration key.")
    connect_timeout_seconds: float = Field(3.0, gt=0, description="TCP/TLS connect timeout per attempt.")
    read_timeout_seconds: float = Field(10.0, gt=0, description="Read timeout per attempt.")
    request_deadline_seconds: float = Field(
        20.0,
        gt=0,
        le=50,  # under the 60 s after which a resumed step treats an earlier idempotency key as abandoned
        description="Total time one BFF request may spend calling Codat, retries included.",
    )
    max_attempts: int = Field(4, ge=1, description="Attempts per Codat call (first try plus retries).")
    max_in_flight_per_company: int = Field(10, ge=1, description="Codat allows 10 concurrent per company.")
    circuit_breaker_threshold: int = Field(
        5, ge=1, description="Consecutive unavailable outcomes (5xx, 408, network) that open the circuit."
    )
    circuit_breaker_cooldown_seconds: float = Field(
        10.0, gt=0, description="How long an open circuit fails fast before letting one trial call through."
    )
    link_safety_margin_seconds: int = Field(
        300, ge=0, description="A stored linkUrl is refreshed when less than this is left of its hour."
    )
    otp_lifetime_seconds: int = Field(3600, gt=0, description="How long Codat's linkUrl OTP lives.")


class AuthSettings(BaseModel):
    jwt_algorithm: str = Field("HS256", description="HS256 with jwt_secret, or RS256 with jwks_url.")
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret for end-user and service tokens.")
    jwks_url: str | None = Field(None, description="JWKS endpoint of the identity provider (RS256).")
    audience: str = Field("bankfeeds-bff", description="`aud` of end-user tokens.")
    issuer: str | None = Field(None, description="Expected `iss`, if set.")
    business_claim: str = Field("business_id", description="Claim that names the user's business.")
    service_audience: str = Field("bankfeeds-bff-internal", description="`aud` of internal service tokens.")


class SandboxSettings(BaseModel):
    enabled: bool = Field(
        False, description="Mount the embedded Codat sandbox at /sandbox and use it as Codat."
    )
    api_key: SecretStr = Field(SecretStr(DEV_SANDBOX_API_KEY), description="API key the sandbox accepts.")
    public_url: str | None = Field(
        None,
        description="Browser-facing root of the sandbox (for linkUrls), e.g. http://127.0.0.1:8000/sandbox.",
    )
    webhook_url: str | None = Field(
        None, description="Where the sandbox delivers its webhooks (dev: our own)."
    )
    redirect_url: str | None = Field(
        None, description="Where the QuickBooks stand-in sends the SMB back (dev: the demo)."
    )


class WebhookSettings(BaseModel):
    signing_secret: SecretStr | None = Field(None, description="Codat's `whsec_…` endpoint signing secret.")
    reconcile_interval_seconds: int = Field(
        900,
        ge=0,
        description="How often unsettled bank feeds are re-read from Codat in case a webhook was missed (0: never).",
    )
    apply_attempts: int = Field(
        5, ge=1, description="Tries to apply a stored event before it is parked as dead."
    )
    apply_backoff_seconds: float = Field(
        30.0, gt=0, description="Wait before the second try; doubled before each further one."
    )


class EventsSettings(BaseModel):
    """Outbound events to the fintech's own services (app/events)."""

    secret_key: SecretStr | None = Field(
        None, description="Fernet key that encrypts subscriptions' signing secrets at rest. Required in prod."
    )
    allow_private_targets: bool | None = Field(
        None,
        description="Allow subscriptions to loopback/private addresses (default: only outside prod).",
    )
    retry_for_seconds: int = Field(
        24 * 3600,
        gt=0,
        description="How long a delivery is retried (with backoff) before it is parked failed.",
    )
    disable_after_seconds: int = Field(
        3 * 24 * 3600, gt=0, description="A subscription failing without a success this long is disabled."
    )
    stalled_after_seconds: int = Field(
        24 * 3600, gt=0, description="An onboarding pending longer than this emits `onboarding.stalled`."
    )
    request_timeout_seconds: float = Field(10.0, gt=0, description="Per delivery attempt.")


class AuditSettings(BaseModel):
    retention_days: int = Field(400, gt=0, description="Audit entries older than this are deleted.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BANKFEEDS_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    environment: Environment = Environment.prod
    log_level: str = "INFO"
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    codat: CodatSettings = Field(default_factory=CodatSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    cors_origins: list[str] = Field(default_factory=list, description="SPA origins allowed by CORS.")
    events: EventsSettings = Field(default_factory=EventsSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _fill_dev_secrets_and_refuse_them_in_prod(self) -> "Settings":
        if self.environment is not Environment.prod:
            self.auth.jwt_secret = self.auth.jwt_secret or SecretStr(DEV_JWT_SECRET)
            self.webhooks.signing_secret = self.webhooks.signing_secret or SecretStr(DEV_WEBHOOK_SECRET)
            self.events.secret_key = self.events.secret_key or SecretStr(DEV_EVENTS_KEY)
            return self
        if self.sandbox.enabled:
            raise ValueError("the sandbox is a development tool: it cannot be enabled in prod")
        if self.codat.api_key is None:
            raise ValueError("codat.api_key is required in prod (BANKFEEDS_CODAT__API_KEY)")
        if self.auth.jwt_secret is None and self.auth.jwks_url is None:
            raise ValueError("auth needs jwt_secret or jwks_url in prod")
        if self.auth.jwt_secret and self.auth.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            raise ValueError("auth.jwt_secret is the dev secret: set a real one in prod")
        if self.webhooks.signing_secret is None:
            raise ValueError("webhooks.signing_secret is required in prod")
        if self.events.secret_key and self.events.secret_key.get_secret_value() == DEV_EVENTS_KEY:
            raise ValueError("events.secret_key is the dev key: set a real one in prod")
        return self

    @property
    def private_targets_allowed(self) -> bool:
        """Whether outbound events may go to loopback/private addresses: never in prod unless allowed."""
        if self.events.allow_private_targets is not None:
            return self.events.allow_private_targets
        return self.environment is not Environment.prod

    @property
    def uses_sqlite(self) -> bool:
        return self.database.url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
