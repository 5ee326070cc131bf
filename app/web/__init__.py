"""The demo SPA that `bankfeeds-bff dev` serves at `/`, signed in as the demo business's user.

Only with the sandbox enabled, which production refuses. The page is static/index.html; static/js/ is compiled
by tsc from web/src/ (`make web`).
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.auth.tokens import mint_end_user_token
from app.config import AuthSettings
from app.demo import DEMO_BUSINESS_ID

STATIC = Path(__file__).resolve().parent / "static"


def mount_demo(app: FastAPI, auth: AuthSettings) -> None:
    @app.get("/", include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/demo/token", include_in_schema=False)
    async def demo_token() -> dict[str, str]:
        """What the fintech's identity provider would give its SPA: a user token for the demo business."""
        return {"token": mint_end_user_token(auth, DEMO_BUSINESS_ID)}

    app.mount("/demo", StaticFiles(directory=STATIC), name="demo")
