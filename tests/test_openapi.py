"""openapi/openapi.json is what the app serves: generated clients (the demo's types) stay honest."""

import json

from app.openapi import OPENAPI_PATH, openapi_document, render


def test_the_checked_in_openapi_document_is_current():
    assert OPENAPI_PATH.read_text() == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_every_error_response_declares_the_one_error_shape():
    document = openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and "content" in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert set(json.loads(json.dumps(document["components"]["schemas"]["ErrorBody"]["required"]))) == {
        "error",
        "detail",
        "correlationId",
    }
