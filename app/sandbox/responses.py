"""The sandbox's JSON responses, rendered by pydantic-core instead of the stdlib encoder that Starlette's
JSONResponse uses. The bytes are the same (compact, UTF-8 unescaped), and rendering is about 4 times faster:
a batch of 500 source accounts is ~2 ms of stdlib encoding on the sandbox's one event loop, while the BFF
waits for it.

Bodies never hold NaN or infinities: the sandbox reads its JSON refusing them, as JSON does
(`schemas.read_json`, the admin's `_json_object`), so Starlette's `allow_nan=False` has nothing to catch."""

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse as StdlibJSONResponse


class JSONResponse(StdlibJSONResponse):
    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)
