"""Secrets out of anything we write down: log fields, exception text, stored error messages.

Structured data is redacted by key before it is encoded (so escaping cannot hide a secret from us); free text
(messages, exception text, tracebacks) by value patterns, which also match JSON-escaped quotes. Hand-written
because no maintained library knows Codat's secrets (linkUrl OTPs, QuickBooks one-time credentials).
"""

import re
from typing import Any

REDACTED = "[redacted]"

# Keys whose values are secrets, compared lower-case without `_`/`-`.
_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "username",
        "otp",
        "linkurl",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "secret",
        "signingsecret",
        "apikey",
        "authorization",
        "cookie",
        "credentials",
        "responsebody",
    }
)
_KEY_WORDS = r"password|passwd|username|otp|token|secret|api_?key|linkUrl"
_Q = r"(?:\\*[\"'])?"  # an optional quote, possibly escaped once or more
_SECRET_PATTERNS = [
    # "password": "x", \"password\": \"x\", password=x, 'otp': 'x' …
    (re.compile(rf"({_Q}(?:{_KEY_WORDS}){_Q}\s*[:=]\s*{_Q})([^\"'\\,\s}}&)]+)", re.I), rf"\1{REDACTED}"),
    (re.compile(r"([?&]otp=)[^&\s\"'\\]+", re.I), rf"\1{REDACTED}"),
    (re.compile(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._-]{8,}", re.I), rf"\1 {REDACTED}"),
    (re.compile(r"whsec_[A-Za-z0-9+/=]+"), f"whsec_{REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # JWTs
    # asyncpg quotes a refused parameter's value: "invalid input for query argument $2: 'x' (…)".
    (re.compile(r"(query argument \$\d+: ).*", re.I), rf"\1{REDACTED}"),
    # SQLAlchemy's "[parameters: …]" (hide_parameters is on; this is for an engine built without it).
    (re.compile(r"(\[parameters: ).*?(\]\s*(?:\(|$))", re.I | re.S), rf"\1{REDACTED}\2"),
]


def scrub_text(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "").replace("-", "") in _SECRET_KEYS


def scrub(value: Any) -> Any:
    """A copy of `value` with secret-keyed entries redacted and every string scrubbed of secret patterns."""
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_key(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
