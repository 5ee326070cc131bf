"""One rule at the API boundary for every free-text field, every id and every amount.

Checked by pydantic before an endpoint runs, so nothing is sent to Codat or stored that one of them would
refuse (a NUL is refused by Postgres; Codat and we must never disagree after a half-done rename):
- text is Unicode-normalised (NFC), bounded, and holds no control characters (C0/C1, surrogates, bidi
  overrides that make a name display differently from what it is);
- ids follow one pattern and may not be a word our own paths use (`credentials`, `batch`, …);
- amounts are plain decimals (no `"1_000"`, no `"1e3"`), booleans are JSON booleans (no `"yes"`).
"""

import math
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
ID_MAX_LENGTH = 64
# Path segments of our own API, and words that read as commands: an id equal to one would make a URL
# ambiguous (…/accounts/credentials) or a log line misleading.
RESERVED_IDS = frozenset(
    {
        "accounts",
        "batch",
        "bank-feed",
        "businesses",
        "connect",
        "credentials",
        "events",
        "link",
        "null",
        "reconnect",
        "redirect",
        "refresh",
        "transactions",
        "undefined",
        "webhooks",
    }
)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def _clean_text(max_length: int) -> Callable[[str], str]:
    def clean(value: str) -> str:
        value = unicodedata.normalize("NFC", value)
        for char in value:
            if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS:
                raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    return clean


def _not_reserved(value: str) -> str:
    if value.lower() in RESERVED_IDS:
        raise ValueError(f"{value!r} is a reserved word and cannot be an id")
    return value


# Free text: a name (of a business, an account) and a longer description.
Name = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_clean_text(100))]
Description = Annotated[
    str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_clean_text(1000))
]
# Ids: ours (businesses, accounts) in bodies and paths, and the callers' transaction ids (longer).
Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN),
    AfterValidator(_not_reserved),
]
IdPath = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN), AfterValidator(_not_reserved)
]
ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=ID_PATTERN), AfterValidator(_not_reserved)
]


def _plain_decimal(value: object) -> object:
    # pydantic's lax mode reads "1_000" as 1000 and "1e3" as 1000: both are typos in a bank amount. Python's
    # JSON parser also accepts NaN and Infinity.
    malformed_text = isinstance(value, str) and not _PLAIN_DECIMAL.match(value)
    if isinstance(value, bool) or malformed_text or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError('must be a number, e.g. 1000.50 or "1000.50"')
    return value


Money = Annotated[Decimal, BeforeValidator(_plain_decimal), Field(max_digits=16, decimal_places=2)]
Flag = StrictBool
