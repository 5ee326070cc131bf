"""Each subscription's signing secret: made here, shown to its creator once, kept encrypted (Fernet, from the
`cryptography` package PyJWT already brings) because signing needs it back in clear."""

import base64
import secrets

from cryptography.fernet import Fernet
from pydantic import SecretStr

from app.errors import AppError


class EventsNotConfigured(AppError):
    status_code = 503
    code = "events_not_configured"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class SecretBox:
    def __init__(self, key: SecretStr | None) -> None:
        self._fernet = Fernet(key.get_secret_value()) if key is not None else None

    def _box(self) -> Fernet:
        if self._fernet is None:
            raise EventsNotConfigured("Outbound events are not configured: set BANKFEEDS_EVENTS__SECRET_KEY.")
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._box().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._box().decrypt(sealed.encode()).decode()
