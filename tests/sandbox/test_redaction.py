"""Link OTPs never reach the access log."""

import logging

from app.sandbox.redaction import ACCESS_LOGGER


def test_otps_in_access_log_lines_are_redacted(make_sandbox_app, caplog) -> None:
    make_sandbox_app()
    path = "/link/companies/c/connections/k/start?otp=123456&lang=fr"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        logging.getLogger(ACCESS_LOGGER).info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200
        )
    assert "123456" not in caplog.text
    assert "otp=***&lang=fr" in caplog.text


def test_sages_authorization_id_in_access_log_lines_is_redacted(make_sandbox_app, caplog) -> None:
    make_sandbox_app()
    path = "/sage/authorized?state=5f0c9a1e-1111-4e8e-9d2b-3c4d5e6f7a8b"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        logging.getLogger(ACCESS_LOGGER).info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200
        )
    assert "5f0c9a1e" not in caplog.text
    assert "state=***" in caplog.text
