"""`Idempotency-Key` on the internal transactions POST, as on every other POST/PATCH."""

from tests.transactions.conftest import path, transaction


async def test_the_same_key_replays_the_first_answer_and_another_body_is_refused(
    client, tx_headers, connected
):
    headers = {**tx_headers, "Idempotency-Key": "push-1"}
    body = {"transactions": [transaction("k1", connected["today"])]}

    first = await client.post(path(), json=body, headers=headers)
    again = await client.post(path(), json=body, headers=headers)
    other = await client.post(
        path(), json={"transactions": [transaction("k2", connected["today"])]}, headers=headers
    )

    assert first.status_code == 202
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
