"""Source accounts: the v2 body and its rules, batches, PATCH rules, delete, credentials, the removed PUT."""

import pytest

from app.sandbox.models import AccountStatus
from tests.sandbox.support import account_body, assert_codat_error

V2_FIELDS = {
    "id", "accountName", "accountType", "accountNumber", "sortCode", "currency", "balance",
    "accountInfo", "modifiedDate", "status", "feedStartDate",
}  # fmt: skip


@pytest.fixture
async def connection(sandbox) -> dict:
    return await sandbox.connection()


async def test_a_new_account_is_pending_in_the_v2_shape(sandbox, connection) -> None:
    created = await sandbox.account(connection, "ac-001")
    assert set(created) == V2_FIELDS
    assert (created["status"], created["feedStartDate"], created["balance"]) == ("pending", None, 4002)
    assert await sandbox.accounts(connection) == [created]


async def test_optional_v2_fields_are_kept(sandbox, connection) -> None:
    extras = {
        "routingInfo": {"bankCode": "021000021", "type": "rtn"},
        "accountInfo": {
            "description": "Main",
            "nickname": "Ops",
            "accountOpenDate": "2020-01-31",
            "availableBalance": 10.5,
        },
        "modifiedDate": "2024-05-01T10:00:00Z",
    }
    created = await sandbox.account(connection, "ac-001", **extras)
    assert {k: created[k] for k in extras} == extras


@pytest.mark.parametrize(
    ("changes", "item_id"),
    [
        ({"id": None}, "id"),
        ({"accountName": None}, "accountName"),
        ({"accountType": "Debit"}, "accountType"),
        ({"accountNumber": None}, "accountNumber"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": None}, "currency"),
        ({"balance": "12.50"}, "balance"),
        ({"balance": True}, "balance"),
        ({"balance": None}, "balance"),
        ({"routingInfo": {"type": "zip"}}, "routingInfo.type"),
        ({"accountInfo": {"accountOpenDate": "yesterday"}}, "accountInfo.accountOpenDate"),
    ],
)
async def test_invalid_accounts_are_refused(sandbox, connection, changes, item_id) -> None:
    body = {k: v for k, v in account_body("ac-001", **changes).items() if v is not None}
    assert_codat_error(await sandbox.client.post(sandbox.accounts_path(connection), json=body), 400, item_id)
    assert await sandbox.accounts(connection) == []


async def test_an_account_id_is_unique_on_its_connection(sandbox, connection) -> None:
    first = await sandbox.account(connection, "ac-001")
    again = await sandbox.client.post(
        sandbox.accounts_path(connection), json=account_body("ac-001", accountName="x")
    )
    assert_codat_error(again, 400, "id")
    assert await sandbox.accounts(connection) == [first]
    other = await sandbox.connection(connection["companyId"])
    assert (await sandbox.account(other, "ac-001"))["id"] == "ac-001"


async def test_a_batch_where_all_are_created_is_201(sandbox, connection) -> None:
    response = await sandbox.client.post(
        sandbox.accounts_path(connection) + "/batch", json=[account_body("ac-001"), account_body("ac-002")]
    )
    assert response.status_code == 201
    assert [
        (r["sourceAccountId"], r["result"]["statusCode"], r["result"]["error"]) for r in response.json()
    ] == [
        ("ac-001", 201, None),
        ("ac-002", 201, None),
    ]
    assert [a["id"] for a in await sandbox.accounts(connection)] == ["ac-001", "ac-002"]


async def test_a_mixed_batch_is_207_with_one_result_per_item(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    items = [account_body("ac-001"), account_body("ac-002", currency="EURO"), account_body("ac-003")]
    response = await sandbox.client.post(sandbox.accounts_path(connection) + "/batch", json=items)
    assert response.status_code == 207
    results = response.json()
    assert [(r["sourceAccountId"], r["result"]["statusCode"]) for r in results] == [
        ("ac-001", "409"),
        ("ac-002", "400"),
        ("ac-003", 201),
    ]
    assert "currency" in results[1]["result"]["error"]
    assert results[2]["result"]["account"]["status"] == "pending"
    assert [a["id"] for a in await sandbox.accounts(connection)] == ["ac-001", "ac-003"]


async def test_a_batch_where_nothing_is_created_is_409(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    items = [account_body("ac-001"), {"accountName": "no id"}]
    response = await sandbox.client.post(sandbox.accounts_path(connection) + "/batch", json=items)
    assert response.status_code == 409
    assert [r["result"]["statusCode"] for r in response.json()] == ["409", "400"]
    assert [a["id"] for a in await sandbox.accounts(connection)] == ["ac-001"]


@pytest.mark.parametrize("body", [[], {"id": "ac-001"}])
async def test_a_batch_must_be_a_non_empty_array(sandbox, connection, body) -> None:
    assert_codat_error(
        await sandbox.client.post(sandbox.accounts_path(connection) + "/batch", json=body), 400
    )
    assert await sandbox.accounts(connection) == []


async def test_renaming_answers_the_v1_shape(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    path = sandbox.accounts_path(connection) + "/ac-001"
    response = await sandbox.client.patch(path, json={"id": "ac-001", "accountName": "Operating"})
    assert response.status_code == 200
    assert response.json()["accountName"] == "Operating"
    assert "routingInfo" not in response.json()
    assert "accountInfo" not in response.json()
    assert (await sandbox.accounts(connection))[0]["accountName"] == "Operating"


@pytest.mark.parametrize(
    ("patch", "item_id"),
    [
        ({"id": "ac-001", "accountNumber": "999"}, "accountNumber"),
        ({"id": "ac-001", "currency": "CAD"}, "currency"),
        ({"id": "ac-001", "sortCode": "00-00-00"}, "sortCode"),
        ({"id": "ac-001", "accountType": "Credit"}, "accountType"),
        ({"id": "ac-001", "feedStartDate": "2024-01-01T00:00:00Z"}, "feedStartDate"),
        ({"id": "ac-001", "status": "connected"}, "status"),
        ({"id": "ac-001", "accountName": ""}, "accountName"),
        ({"id": "ac-001", "nickname": "x"}, "nickname"),
        ({"id": "ac-002", "accountName": "x"}, "id"),
        ({"accountName": "x"}, "id"),
    ],
)
async def test_patch_refuses_everything_else(sandbox, connection, patch, item_id) -> None:
    before = await sandbox.account(connection, "ac-001")
    response = await sandbox.client.patch(sandbox.accounts_path(connection) + "/ac-001", json=patch)
    assert_codat_error(response, 400, item_id)
    assert await sandbox.accounts(connection) == [before]


async def test_patch_accepts_unchanged_values_alongside_a_change(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    unchanged = {"id": "ac-001", "accountNumber": "12345670", "currency": "USD", "accountName": "Renamed"}
    response = await sandbox.client.patch(sandbox.accounts_path(connection) + "/ac-001", json=unchanged)
    assert response.status_code == 200
    assert response.json()["accountName"] == "Renamed"


async def test_balance_changes_only_while_not_connected(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    path = sandbox.accounts_path(connection) + "/ac-001"
    assert (await sandbox.client.patch(path, json={"id": "ac-001", "balance": 10.25})).json()[
        "balance"
    ] == 10.25
    sandbox.state.connections[connection["id"]].accounts["ac-001"].status = AccountStatus.connected
    assert_codat_error(await sandbox.client.patch(path, json={"id": "ac-001", "balance": 1}), 400, "balance")
    assert (await sandbox.accounts(connection))[0]["balance"] == 10.25


async def test_status_can_be_set_to_disconnected(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    path = sandbox.accounts_path(connection) + "/ac-001"
    response = await sandbox.client.patch(path, json={"id": "ac-001", "status": "disconnected"})
    assert response.json()["status"] == "disconnected"
    assert (await sandbox.accounts(connection))[0]["status"] == "disconnected"


async def test_patching_an_unknown_account_is_404(sandbox, connection) -> None:
    response = await sandbox.client.patch(sandbox.accounts_path(connection) + "/nope", json={"id": "nope"})
    assert_codat_error(response, 404)


async def test_deleting_an_account(sandbox, connection) -> None:
    await sandbox.account(connection, "ac-001")
    path = sandbox.accounts_path(connection) + "/ac-001"
    assert (await sandbox.client.delete(path)).status_code == 204
    assert await sandbox.accounts(connection) == []
    assert_codat_error(await sandbox.client.delete(path), 404)


async def test_the_removed_put_is_not_accepted(sandbox, connection) -> None:
    response = await sandbox.client.put(sandbox.accounts_path(connection), json=[account_body("ac-001")])
    assert_codat_error(response, 405)
    assert await sandbox.accounts(connection) == []


async def test_credentials_need_no_body_and_are_revoked_with_204(sandbox, connection) -> None:
    path = sandbox.accounts_path(connection) + "/credentials"
    issued = await sandbox.client.post(path)
    assert issued.status_code == 200
    assert set(issued.json()) == {"username", "password"}
    assert (await sandbox.client.delete(path)).status_code == 204
    assert sandbox.state.connections[connection["id"]].credentials == []


async def test_accounts_of_an_unknown_connection_are_404(sandbox, connection) -> None:
    path = f"/companies/{connection['companyId']}/connections/9f1c1b43-60f1-4c56-a3f2-7e8f0d5a2b11"
    assert_codat_error(await sandbox.client.get(path + "/connectionInfo/bankFeedAccounts"), 404)


async def test_a_balance_of_nan_is_not_json_a_400_and_nothing_is_created(sandbox, connection) -> None:
    # Python's json module reads NaN and Infinity; JSON has neither, and an account stored with one could
    # not be written back out.
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'[{"id": "ac-001", "accountName": "A", "accountType": "checking", "accountNumber": "1",'
        body += b' "currency": "USD", "balance": ' + literal + b"}]"
        response = await sandbox.client.post(
            sandbox.accounts_path(connection) + "/batch",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert_codat_error(response, 400)
    assert await sandbox.accounts(connection) == []
