"""Server-rendered HTML from the small templates in ``templates/``; values are escaped unless marked Safe."""

import html
from functools import cache
from pathlib import Path
from string import Template
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class Safe(str):
    """A fragment this module rendered itself, inserted as is."""


NOTHING = Safe("")


@cache
def _template(name: str) -> Template:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8"))


def render(template: str, /, **values: object) -> Safe:
    escaped = {
        key: value if isinstance(value, Safe) else html.escape(str(value)) for key, value in values.items()
    }
    return Safe(_template(template).substitute(escaped))


def join(fragments: list[Safe]) -> Safe:
    return Safe("\n".join(fragments))


def page(title: str, body: Safe, *, lang: str = "en", status_code: int = 200) -> HTMLResponse:
    document = render("layout.html", title=title, body=body, lang=lang)
    # Pages carry one-time passwords and credentials: never cache them.
    return HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})


async def form_fields(request: Request) -> dict[str, list[str]]:
    """An application/x-www-form-urlencoded body (the only kind these pages post)."""
    return parse_qs((await request.body()).decode(), keep_blank_values=True)


def first(fields: dict[str, list[str]], name: str) -> str:
    return fields.get(name, [""])[0]


def message(text: str, *, kind: str, element_id: str) -> Safe:
    """A one-line notice (kind "notice") or error (kind "error")."""
    return Safe(f'<p class="{kind}" id="{element_id}" role="status">{html.escape(text)}</p>')
