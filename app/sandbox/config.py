"""How a sandbox instance starts: keys, links, OTP lifetime, webhook consumer, seed."""

from dataclasses import dataclass, field

from app.config import DEV_SANDBOX_API_KEY, DEV_WEBHOOK_SECRET


@dataclass
class SandboxConfig:
    api_keys: list[str] = field(default_factory=lambda: [DEV_SANDBOX_API_KEY])
    # Browser-facing root for linkUrls, e.g. "http://127.0.0.1:8000/sandbox"; else derived from each request.
    public_url: str | None = None
    otp_lifetime_seconds: int = 3600
    webhook_url: str | None = None
    webhook_secret: str | None = DEV_WEBHOOK_SECRET
    # Makes ids, OTPs, credentials and fault draws reproducible.
    seed: int | None = None
    # Codat retries over ~28 hours; the sandbox keeps the idea but not the wait.
    webhook_retry_delays_seconds: list[float] = field(default_factory=lambda: [0.2, 1.0, 3.0])
    webhook_timeout_seconds: float = 5.0
    redirect_url: str | None = None
    daily_quota: int | None = None
