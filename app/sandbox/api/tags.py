"""Codat's tag filter on List companies: `key = value`, `key != value`, `key ~ part`, joined by `&&`."""

import re
from collections.abc import Callable, Mapping

from app.sandbox.errors import invalid

_CONDITION = re.compile(r"^\s*([^=!~&\s]{1,27})\s*(=|!=|~)\s*(.*?)\s*$")
_TESTS: dict[str, Callable[[str | None, str], bool]] = {
    "=": lambda held, wanted: held == wanted,
    "!=": lambda held, wanted: held != wanted,
    "~": lambda held, wanted: held is not None and wanted in held,
}

TagFilter = Callable[[Mapping[str, str]], bool]


def parse_tag_filter(expression: str) -> TagFilter:
    conditions = [_condition(part) for part in expression.split("&&")]
    return lambda tags: all(test(tags.get(key), value) for key, test, value in conditions)


def _condition(text: str) -> tuple[str, Callable[[str | None, str], bool], str]:
    match = _CONDITION.match(text)
    if match is None:
        raise invalid(
            f"'{text.strip()}' is not a tag condition like `key = value`.",
            item_id="tags",
            validator="QueryValidator",
        )
    key, operator, value = match.groups()
    return key, _TESTS[operator], value
