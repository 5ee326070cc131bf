"""Every domain's ORM models, imported in one place for Alembic and the tests."""

from app.audit.models import AuditEntry
from app.bankfeed.models import BankAccount, Business, FeedAccount, FeedConnection, StoredBankFeedView
from app.db import Base
from app.events.models import EventDelivery, EventSubscription, FeedState, OutboundEvent, StreamCursor
from app.idempotency.models import IdempotencyRecord
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
    "AuditEntry",
    "EventSubscription",
    "OutboundEvent",
    "EventDelivery",
    "FeedState",
    "StreamCursor",
]
