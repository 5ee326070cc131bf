"""Write the BFF's OpenAPI document to openapi/openapi.json (`python -m app.openapi`)."""

import json
import sys
from pathlib import Path
from typing import Any

from app.config import Settings
from app.main import create_app

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    return create_app(Settings(environment="test")).openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render())
    sys.stdout.write(f"wrote {OPENAPI_PATH}\n")
