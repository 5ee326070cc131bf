"""Companies: Codat's name and tag rules, pagination, get with dataConnections, delete, and auth."""

import base64

import httpx
import pytest

from app.sandbox import SandboxConfig
from tests.sandbox.support import assert_codat_error, basic_auth


async def company_count(sandbox) -> int:
    return (await sandbox.client.get("/companies")).json()["totalResults"]


async def test_forbidden_characters_are_removed_from_the_name(sandbox) -> None:
    created = await sandbox.company("Company (Codat[1])")
    assert created["name"] == "Company Codat1"
    assert (await sandbox.client.get(f"/companies/{created['id']}")).json()["name"] == "Company Codat1"


@pytest.mark.parametrize(
    ("body", "item_id"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "()[]{}"}, "name"),
        ({"name": 42}, "name"),
        ({"name": "Dave", "tags": {f"k{i}": "v" for i in range(11)}}, "tags"),
        ({"name": "Dave", "tags": {"k" * 28: "v"}}, "tags.kkkkkkkkkkkkkkkkkkkkkkkkkkkk.[key]"),
        ({"name": "Dave", "tags": {"": "v"}}, "tags..[key]"),
        ({"name": "Dave", "tags": {"uid": "v" * 101}}, "tags.uid"),
    ],
)
async def test_invalid_companies_are_refused_and_nothing_is_created(sandbox, body, item_id) -> None:
    assert_codat_error(await sandbox.client.post("/companies", json=body), 400, item_id)
    assert await company_count(sandbox) == 0


async def test_tags_at_their_limits_are_kept(sandbox) -> None:
    tags = {f"{i}".rjust(27, "k"): "v" * 100 for i in range(10)}
    response = await sandbox.client.post("/companies", json={"name": "Dave", "tags": tags})
    assert response.status_code == 200
    assert response.json()["tags"] == tags


async def test_a_body_that_is_not_json_is_a_400(sandbox) -> None:
    response = await sandbox.client.post(
        "/companies", content=b"{name", headers={"content-type": "application/json"}
    )
    assert_codat_error(response, 400)


async def test_pages_carry_codat_links(sandbox) -> None:
    for name in ("A", "B", "C"):
        await sandbox.company(name)
    first = (await sandbox.client.get("/companies", params={"pageSize": 2})).json()
    second = (await sandbox.client.get("/companies", params={"page": 2, "pageSize": 2})).json()
    assert [c["name"] for c in first["results"]] == ["A", "B"]
    assert [c["name"] for c in second["results"]] == ["C"]
    assert (first["totalResults"], first["pageNumber"], first["pageSize"]) == (3, 1, 2)
    assert first["_links"] == {
        "self": {"href": "/companies"},
        "current": {"href": "/companies?page=1&pageSize=2"},
        "next": {"href": "/companies?page=2&pageSize=2"},
    }
    assert second["_links"]["previous"] == {"href": "/companies?page=1&pageSize=2"}
    assert "next" not in second["_links"]


@pytest.mark.parametrize(
    ("params", "item_id"),
    [
        ({"page": 0}, "page"),
        ({"page": "one"}, "page"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 5001}, "pageSize"),
        ({"query": "name>Dave"}, "query"),  # ">" does not apply to strings
    ],
)
async def test_invalid_paging_is_a_400(sandbox, params, item_id) -> None:
    await sandbox.company()
    assert_codat_error(await sandbox.client.get("/companies", params=params), 400, item_id)
    assert await company_count(sandbox) == 1


async def test_the_largest_page_is_served_at_the_response_schema_maximum(sandbox) -> None:
    await sandbox.company()
    page = (await sandbox.client.get("/companies", params={"pageSize": 5000})).json()
    assert page["pageSize"] == 2000


async def test_get_company_includes_its_connections(sandbox) -> None:
    connection = await sandbox.connection()
    company = (await sandbox.client.get(f"/companies/{connection['companyId']}")).json()
    assert [c["id"] for c in company["dataConnections"]] == [connection["id"]]
    assert company["dataConnections"][0]["linkUrl"] == connection["linkUrl"]


async def test_deleting_a_company_removes_it_and_its_connections(sandbox) -> None:
    connection = await sandbox.connection()
    company_id = connection["companyId"]
    assert (await sandbox.client.delete(f"/companies/{company_id}")).status_code == 204
    assert_codat_error(await sandbox.client.get(f"/companies/{company_id}"), 404)
    assert_codat_error(
        await sandbox.client.get(f"/companies/{company_id}/connections/{connection['id']}"), 404
    )
    assert await company_count(sandbox) == 0
    assert sandbox.state.connections == {}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic_auth("not-the-key"),
        "Basic " + base64.b64encode(b"sandbox-dev-api-key:").decode(),
        "Bearer sandbox-dev-api-key",
        "Basic %%%",
    ],
)
async def test_requests_without_a_valid_key_are_401(sandbox, authorization) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    request = sandbox.client.build_request("POST", "/companies", json={"name": "Dave"}, headers=headers)
    if authorization is None:
        del request.headers["Authorization"]
    assert_codat_error(await sandbox.client.send(request), 401)
    assert await company_count(sandbox) == 0


async def test_every_configured_key_is_accepted(make_sandbox_app) -> None:
    app = make_sandbox_app(SandboxConfig(api_keys=["key-one", "key-two"]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test"
    ) as client:
        for key in ("key-one", "key-two"):
            assert (
                await client.get("/companies", headers={"Authorization": basic_auth(key)})
            ).status_code == 200
        assert (await client.get("/companies", headers={"Authorization": basic_auth()})).status_code == 401


async def test_list_filters_companies_by_tags_as_codats_query_language_does(sandbox) -> None:
    for name, tags in [
        ("A", {"uid": "biz-1", "region": "us"}),
        ("B", {"uid": "biz-2", "region": "us"}),
        ("C", {}),
    ]:
        assert (await sandbox.client.post("/companies", json={"name": name, "tags": tags})).status_code == 200

    async def names(expression: str) -> list[str]:
        response = await sandbox.client.get("/companies", params={"tags": expression})
        assert response.status_code == 200, response.text
        return sorted(c["name"] for c in response.json()["results"])

    assert await names("uid = biz-1") == ["A"]
    assert await names("region = us && uid != biz-1") == ["B"]
    assert await names("uid ~ biz") == ["A", "B"]
    assert await names("uid = nobody") == []


async def test_a_tag_filter_that_is_not_a_condition_is_refused(sandbox) -> None:
    response = await sandbox.client.get("/companies", params={"tags": "uid biz-1"})

    assert_codat_error(response, 400)
