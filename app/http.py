"""Small HTTP helpers shared by the routers."""

import hashlib
from dataclasses import dataclass

from fastapi import Request, Response
from pydantic import BaseModel

NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A model's JSON body and its strong ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, model: BaseModel) -> "Rendered":
        body = model.model_dump_json(by_alias=True).encode()
        return cls(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def etag_response(request: Request, model: BaseModel | Rendered) -> Response:
    """JSON with a strong ETag; ``304`` when the caller already has this exact body."""
    rendered = model if isinstance(model, Rendered) else Rendered.of(model)
    return rendered_response(rendered, request.headers.get("if-none-match", ""))


def rendered_response(rendered: Rendered, if_none_match: str) -> Response:
    headers = {"ETag": rendered.etag, "Cache-Control": "private, no-cache"}
    if rendered.etag in if_none_match:
        return Response(status_code=304, headers=headers)
    return Response(rendered.body, media_type="application/json", headers=headers)


def no_store(response: Response) -> None:
    response.headers.update(NO_STORE)
