"""Every domain's ORM models, imported in one place for Alembic and the tests."""

from app.db import Base
from app.idempotency.models import IdempotencyRecord
from app.onboarding.models import BankAccount, Business, FeedAccount, FeedConnection, StoredBankFeedView
from app.transactions.models import BankTransaction, TransactionBatch, TransactionStream
from app.webhooks.models import WebhookEvent

__all__ = [
    "Base",
    "IdempotencyRecord",
    "BankAccount",
    "Business",
    "FeedAccount",
    "FeedConnection",
    "StoredBankFeedView",
    "WebhookEvent",
    "BankTransaction",
    "TransactionBatch",
    "TransactionStream",
]
