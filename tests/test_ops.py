"""What the operator on call looks at: liveness, readiness with the reason, metrics."""

import pytest


async def test_healthz_answers_while_the_process_is_up(client):
    response = await client.get("/healthz")

    assert response.json() == {"status": "ok"}


class TestReadyz:
    async def test_ready_when_database_codat_hcws_and_data_types_are(self, client):
        response = await client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {
            "status": "ready",
            "checks": {"database": "ok", "codat": "ok", "integration": "ok", "dataTypes": "ok"},
        }

    @pytest.mark.parametrize(
        ("portal", "check", "reason"),
        [
            ({"integrationEnabled": False}, "integration", "hcws is not enabled"),
            ({"dataTypes": {"bankTransactions": False}}, "dataTypes", "bankTransactions"),
        ],
    )
    async def test_not_ready_names_the_switch_to_turn_on(self, client, sandbox, portal, check, reason):
        sandbox.set_settings(portal)

        response = await client.get("/readyz")

        assert response.status_code == 503
        assert response.json()["status"] == "not_ready"
        assert reason in response.json()["checks"][check]

    async def test_not_ready_while_codat_fails(self, client, sandbox):
        sandbox.set_knobs(errorRate=1.0)

        response = await client.get("/readyz")

        assert response.status_code == 503
        assert response.json()["checks"]["codat"].startswith("failed")


async def test_metrics_count_requests_by_route_template(client, user_headers, business):
    await client.get("/v1/bank-feed", headers=user_headers(business))

    metrics = (await client.get("/metrics")).text

    assert 'bff_http_requests_total{method="GET",route="/v1/bank-feed",status="200"}' in metrics
    assert "codat_calls_total" in metrics


async def test_every_answer_carries_a_correlation_id_and_errors_repeat_it(client):
    response = await client.get("/v1/bank-feed", headers={"X-Request-ID": "trace-12345678"})

    assert response.headers["x-request-id"] == "trace-12345678"
    assert response.json()["correlationId"] == "trace-12345678"
