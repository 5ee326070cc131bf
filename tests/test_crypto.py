"""Values encrypted at rest (app/crypto.py): long ones compressed first, every one read back as it was."""

import json

import pytest
from cryptography.fernet import Fernet

from app import crypto


@pytest.fixture(autouse=True)
def _keys_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "_cipher", crypto._cipher)  # the tests' own keys, gone with them


def test_a_long_value_is_stored_compressed_and_read_back_as_it_was() -> None:
    crypto.use_keys(Fernet.generate_key().decode())
    accounts = [{"accountId": f"acc-{n:03d}", "status": "pending", "currency": "USD"} for n in range(500)]
    body = json.dumps({"linkUrl": "https://link.example/?otp=secret", "accounts": accounts})

    token = crypto.seal(body)

    assert crypto.unseal(token) == body
    assert len(token) < len(body) / 4  # plain Fernet would be a third longer than the body
    assert "secret" not in token


def test_short_values_and_values_stored_before_compression_read_back_as_they_were() -> None:
    key = Fernet.generate_key()
    crypto.use_keys(key.decode())
    link = "https://link.example/?otp=secret"
    long_and_stored_uncompressed = Fernet(key).encrypt(("x" * 5000).encode()).decode()

    assert crypto.unseal(crypto.seal(link)) == link
    assert len(crypto.seal(link)) > len(link)  # not compressed: encrypted as it is
    assert crypto.unseal(long_and_stored_uncompressed) == "x" * 5000
