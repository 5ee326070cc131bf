"""The floor: a bare FastAPI endpoint returning a small dict (10 fields) through FastAPI's default JSON
response, as in the project's performance anchors (model (a)). Served by uvicorn with the BFF's
HTTP protocol (bench/harness.py)."""

from fastapi import FastAPI

SUMMARY = {
    "business_id": "e3df041a-4230-1ddd-1ab8-b9f55cd43847",
    "name": "Biz 1",
    "currency": "GBP",
    "country": "GB",
    "status": "active",
    "account_count": 3,
    "total_balance": "80.22",
    "total_available": "66.66",
    "last_synced_at": "2024-01-01T00:00:00Z",
    "feed_version": 7,
}


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bare")
    async def bare():  # no return annotation: no response model, as in the anchor
        return SUMMARY

    return app
