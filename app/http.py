"""Small HTTP helpers shared by the routers."""

import hashlib

from fastapi import Request, Response
from pydantic import BaseModel

NO_STORE = {"Cache-Control": "no-store"}


def etag_response(request: Request, model: BaseModel) -> Response:
    """JSON with a strong ETag; ``304`` when the caller already has this exact body."""
    body = model.model_dump_json(by_alias=True).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def no_store(response: Response) -> None:
    response.headers.update(NO_STORE)
