"""``/``: what this sandbox is, the API key it accepts, and where its admin pages and Codat's docs are."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.sandbox.context import public_root, sandbox_state
from app.sandbox.pages.render import page, render

router = APIRouter()


@router.get("/")
async def index(request: Request) -> HTMLResponse:
    api_key = sandbox_state(request).config.api_keys[0]
    return page("Codat sandbox", render("index.html", root=public_root(request), api_key=api_key))
