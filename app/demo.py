"""The demo business `dev` registers, so that a person can walk the whole flow at once."""

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.bankfeed.models import BankAccount
from app.bankfeed.repository import BankFeedRepository

DEMO_BUSINESS_ID = "demo-business"
DEMO_ACCOUNTS: list[dict[str, Any]] = [
    {
        "id": "acc-checking",
        "name": "Operating checking",
        "account_type": "checking",
        "account_number": "000123456789",
        "routing_number": "021000021",
        "balance": Decimal("4002.00"),
    },
    {
        "id": "acc-savings",
        "name": "Tax reserve savings",
        "account_type": "savings",
        "account_number": "000987654321",
        "routing_number": "021000021",
        "balance": Decimal("12500.50"),
    },
    {
        "id": "acc-card",
        "name": "Business credit card",
        "account_type": "creditCard",
        "account_number": "4111000011112222",
        "routing_number": None,
        "balance": Decimal("-742.18"),
    },
]


async def register_demo_business(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Idempotent: an account the demo user has renamed keeps its name."""
    async with sessions.begin() as session:
        repo = BankFeedRepository(session)
        await repo.upsert_business(DEMO_BUSINESS_ID, "Acme Bakery LLC", "US")
        for fields in DEMO_ACCOUNTS:
            if await repo.get_bank_account(DEMO_BUSINESS_ID, str(fields["id"])) is None:
                await repo.save_bank_account(
                    BankAccount(business_id=DEMO_BUSINESS_ID, currency="USD", **fields)
                )
