"""One Settings object for the whole service.

Environment variables use the ``BANKFEEDS_`` prefix and ``__`` for nesting, e.g.
``BANKFEEDS_DATABASE__URL`` or ``BANKFEEDS_CODAT__API_KEY``. Precedence: environment, then ``.env``, then
the defaults below. Secrets are ``SecretStr`` and have no usable default outside ``dev``/``test``.
"""

from enum import StrEnum
from functools import lru_cache
from typing import Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Known, non-secret values used only by `dev` and the tests; production refuses them.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
DEV_SANDBOX_API_KEY = "sandbox-dev-api-key"
DEV_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc="
DEV_USER_ISSUER = "bankfeeds-dev-identity"
DEV_SERVICE_ISSUER = "bankfeeds-dev-services"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMDEyMzQ1Njc="  # a Fernet key (32 bytes, base64)


class Environment(StrEnum):
    dev = "dev"
    test = "test"
    prod = "prod"


class DatabaseSettings(BaseModel):
    url: str = Field(
        "sqlite+aiosqlite:///./bankfeeds-dev.sqlite3",
        description="SQLAlchemy async URL: postgresql+asyncpg://… (production), sqlite+aiosqlite://… (dev).",
    )
    # A fixed-size pool by default: an overflow connection is closed when it is returned, so each burst opened
    # new ones (a Postgres backend started, connect's statements prepared again) in place of warm ones; with
    # the same 15 at most, keeping all of them costs only idle backends (HikariCP recommends a fixed-size
    # pool for the same reason: https://github.com/brettwooldridge/HikariCP#frequently-used).
    pool_size: int = Field(15, ge=1, description="Postgres connections kept per process.")
    max_overflow: int = Field(0, ge=0, description="Extra connections opened under bursts, closed after.")
    command_timeout_seconds: float = Field(10.0, gt=0, description="asyncpg per-statement timeout.")
    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) for secrets at rest (stored links, replayable credentials), "
        "comma-separated, newest first. Required in prod; `python -c 'from cryptography.fernet import "
        "Fernet; print(Fernet.generate_key().decode())'` makes one.",
    )


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
    quota_reserve: int = Field(
        50,
        ge=0,
        description="With this many requests or fewer left of Codat's daily quota, space calls out until it "
        "resets (X-Rate-Limit-* headers); with none left, fail retryably without calling.",
    )


class AuthSettings(BaseModel):
    jwt_algorithm: str = Field("HS256", description="HS256 with jwt_secret, or RS256 with jwks_url.")
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret for end-user and service tokens.")
    jwks_url: str | None = Field(None, description="JWKS endpoint of the identity provider (RS256).")
    audience: str = Field("bankfeeds-bff", description="`aud` of end-user tokens.")
    issuer: str | None = Field(None, description="Required `iss` of end-user tokens (required in prod).")
    business_claim: str = Field("business_id", description="Claim that names the user's business.")
    service_audience: str = Field("bankfeeds-bff-internal", description="`aud` of internal service tokens.")
    service_issuer: str | None = Field(
        None, description="Required `iss` of service tokens (required in prod, unlike the users' issuer)."
    )
    service_jwt_secret: SecretStr | None = Field(
        None, description="HS256 secret of service tokens, if not the users' one (recommended)."
    )
    remembered_tokens: int = Field(
        20_000,
        ge=1,
        description="Verified tokens each process remembers (~0.5 KB each), least recent first out.",
    )


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
        description="How often unsettled bank feeds are re-read from Codat, for missed webhooks (0: never).",
    )
    apply_attempts: int = Field(
        5, ge=1, description="Tries to apply a stored event before it is parked as dead."
    )
    apply_backoff_seconds: float = Field(
        30.0, gt=0, description="Wait before the second try; doubled before each further one."
    )


class RateLimitSettings(BaseModel):
    storage_url: str = Field(
        "memory://",
        description="Where the counters live: memory:// (one process) or redis://host:6379/0 (all replicas).",
    )
    codat_calls_per_business: str = Field(
        "60/minute",
        description="Requests of one business that call Codat (`limits` notation); reading the link "
        "counts only when it is refreshed.",
    )
    credentials_per_business: str = Field(
        "5/minute", description="One-time credential sets one business mints."
    )
    per_service: str = Field("1200/minute", description="Requests of one internal service.")
    event_streams_per_business: int = Field(
        5, ge=1, description="Open event streams per business, per process."
    )


class HttpSettings(BaseModel):
    max_body_bytes: int = Field(2_000_000, ge=1024, description="Larger request bodies are refused (413).")
    ops_token: SecretStr | None = Field(
        None,
        description="If set, /docs, /redoc, /openapi.json and /metrics need `Authorization: Bearer <it>`.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "`serve`: a connection is closed if a request's headers are not complete this long after it opens"
            " (the first request) or after the request's first byte (a later one)."
        ),
    )
    # Longer than a proxy in front keeps its idle connections to us (nginx's upstream keepalive_timeout and
    # an AWS Application Load Balancer's idle timeout: 60 s by default), so that it is never us who closes a
    # connection it may be about to reuse: app/serving.py says why. uvicorn's own default (5 s) is not.
    keep_alive_seconds: float = Field(
        75.0,
        gt=0,
        description=(
            "`serve`: a connection idle this long between requests is closed; keep it above the idle timeout"
            " of any proxy or load balancer in front."
        ),
    )


class OpsSettings(BaseModel):
    codat_check_interval_seconds: float = Field(
        60.0, ge=1, description="How often a process calls Codat to check it and one Portal switch (in turn)."
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, description="After SIGTERM, how long requests in flight get before the process exits."
    )
    worker_metrics_port: int = Field(
        9101, ge=0, le=65535, description="The worker's /metrics port (0: none)."
    )
    gauges_interval_seconds: float = Field(
        15.0, gt=0, description="How often the worker samples the outbox and webhook backlog for its gauges."
    )


class TracingSettings(BaseModel):
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces; unset: off."
    )
    service_name: str = Field("bankfeeds-bff", description="`service.name` of the spans.")


class RetentionSettings(BaseModel):
    webhook_event_days: float = Field(30, gt=0, description="Applied webhook events are kept this long.")
    idempotency_record_days: float = Field(
        1,
        ge=0,
        description="Idempotency records are kept this long after they expire (24 h after the request).",
    )
    delivered_transaction_days: float = Field(
        90, gt=0, description="Delivered transactions are kept this long after delivery."
    )
    batch_size: int = Field(1000, ge=1, le=50_000, description="Rows deleted per transaction.")
    interval_seconds: float = Field(3600, ge=0, description="How often the worker prunes (0: never).")


class EventsSettings(BaseModel):
    """Outbound events to the fintech's own services (app/events)."""

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


class DatabaseOnlySettings(BaseSettings):
    """What `migrate` needs, and all it needs: the environment and the database."""

    model_config = SettingsConfigDict(
        env_prefix="BANKFEEDS_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    environment: Environment = Environment.prod
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @model_validator(mode="after")
    def _refuse_what_prod_cannot_run_with(self) -> Self:
        problems = self.prod_problems() if self.environment is Environment.prod else []
        if problems:
            # One message naming every problem, by environment variable, never with its value.
            raise ValueError("\n".join(problems))
        return self

    def prod_problems(self) -> list[str]:
        if "url" not in self.database.model_fields_set:
            return ["BANKFEEDS_DATABASE__URL is required in prod (the SQLite default is for dev)"]
        return []


class ApiSettings(BaseModel):
    docs_enabled: bool | None = Field(
        None, description="Serve Swagger UI at /docs. Default: on in dev and test, off in prod."
    )


class Settings(DatabaseOnlySettings):
    log_level: str = "INFO"
    api: ApiSettings = Field(default_factory=ApiSettings)
    codat: CodatSettings = Field(default_factory=CodatSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    cors_origins: list[str] = Field(default_factory=list, description="SPA origins allowed by CORS.")
    view_cache_entries: int = Field(
        20_000, ge=1, description="Bank-feed views each process keeps (~1.5 KB each), least recent dropped."
    )
    events: EventsSettings = Field(default_factory=EventsSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _fill_dev_secrets(self) -> Self:
        if self.environment is not Environment.prod:
            self.auth.jwt_secret = self.auth.jwt_secret or SecretStr(DEV_JWT_SECRET)
            self.webhooks.signing_secret = self.webhooks.signing_secret or SecretStr(DEV_WEBHOOK_SECRET)
            self.database.encryption_key = self.database.encryption_key or SecretStr(DEV_ENCRYPTION_KEY)
            self.auth.issuer = self.auth.issuer or DEV_USER_ISSUER
            self.auth.service_issuer = self.auth.service_issuer or DEV_SERVICE_ISSUER
        return self

    def prod_problems(self) -> list[str]:
        problems = super().prod_problems()
        if self.sandbox.enabled:
            problems.append("BANKFEEDS_SANDBOX__ENABLED: the sandbox is a development tool, not for prod")
        if self.codat.api_key is None:
            problems.append("BANKFEEDS_CODAT__API_KEY is required in prod")
        if self.auth.jwt_secret is None and self.auth.jwks_url is None:
            problems.append("BANKFEEDS_AUTH__JWT_SECRET (or BANKFEEDS_AUTH__JWKS_URL) is required in prod")
        if self.auth.jwt_secret and self.auth.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            problems.append("BANKFEEDS_AUTH__JWT_SECRET is the dev secret: set a real one in prod")
        if self.webhooks.signing_secret is None:
            problems.append("BANKFEEDS_WEBHOOKS__SIGNING_SECRET is required in prod")
        auth = self.auth
        if not auth.issuer or not auth.service_issuer or auth.issuer == auth.service_issuer:
            problems.append(
                "BANKFEEDS_AUTH__ISSUER and BANKFEEDS_AUTH__SERVICE_ISSUER are required in prod, "
                "and must differ"
            )
        if auth.audience == auth.service_audience:
            problems.append("BANKFEEDS_AUTH__AUDIENCE and BANKFEEDS_AUTH__SERVICE_AUDIENCE must differ")
        key = self.database.encryption_key
        if key is None or DEV_ENCRYPTION_KEY in key.get_secret_value():
            problems.append("BANKFEEDS_DATABASE__ENCRYPTION_KEY is required in prod, and not the dev key")
        return problems

    @property
    def docs_enabled(self) -> bool:
        if self.api.docs_enabled is None:
            return self.environment is not Environment.prod
        return self.api.docs_enabled

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
