"""The rules for cleared transactions of the platform the account feeds, checked before we accept: what
Codat says each platform refuses (docs.codat.io, each platform's pages under integrations/bank-feeds/), so
that nothing we accept is refused later.

Pure functions: the caller gives the platform, the business's local now and what the account already has.
Each refusal names the transaction's field and the rule, e.g. ``transactions.3.date`` / ``future_date: …``.

- ``future_date``: no transaction dated after now, in the business's time zone (every platform);
- ``before_earliest_date``: the platform's window (``holds.earliest_date``). QuickBooks Online takes the
  cleared date of today or yesterday, and on the account's first write history back to 7 days before its
  feed start date; Xero takes a year (365 days, counted from the date at UTC+14: Codat names no time zone
  for it); Sage, NetSuite, FreeAgent and Exact state no window;
- ``older_than_newest``: nothing older than the newest transaction already accepted for the account.
  Every platform refuses it but Xero, which asks only for order within a push; we hold Xero to it too, so
  that an account's transactions reach the books in date order and its balance is the newest one's;
- ``not_chronological``: a request lists its transactions earliest first. We refuse rather than sort:
  the balance of the last transaction becomes the account's balance in the books, so the caller's order
  matters;
- ``sign_mismatch``: a Credit has a positive amount, a Debit a negative one (Unknown: either);
- ``id_in_use``: Codat ids are unique per company, so an id another account already used is refused.

The transaction types we take (Credit, Debit, Unknown) are the only ones QuickBooks takes, and every other
platform takes them too; so FreeAgent's quirk of writing a positive ``Xfer`` as ``OTHER`` never arises.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.bankfeed.platforms import Platform
from app.transactions.holds import QUICKBOOKS
from app.transactions.schemas import TransactionIn

SIGNS = {"Credit": 1, "Debit": -1}
EXPLANATIONS = {
    "future_date": "{date} is after now ({now}) in the business's time zone",
    "before_earliest_date": "{window}: {date} is before {earliest}, the earliest date this account takes now",
    "older_than_newest": "{date} is older than {newest}, the newest transaction accepted for this account",
    "not_chronological": "{date} comes after {latest} in this request: send transactions earliest first",
    "sign_mismatch": "a {kind} needs a {sign} amount, not {amount}",
    "id_in_use": "account {owner!r} already has a transaction with this id",
}


QUICKBOOKS_WINDOW = (
    "QuickBooks Online takes transactions cleared today or yesterday, and on an account's first write from 7 "
    "days before its feed start date"
)


def window(platform: Platform) -> str:
    """The platform's window in words, for a ``before_earliest_date`` refusal."""
    if platform == QUICKBOOKS:
        return QUICKBOOKS_WINDOW
    return f"{platform.label} takes transactions up to {platform.history_days} days old, from today at UTC+14"


@dataclass(frozen=True)
class Refusal:
    field: str
    rule: str
    explanation: str

    @property
    def reason(self) -> str:
        return f"{self.rule}: {self.explanation}"


def refusals(
    transactions: Sequence[tuple[int, TransactionIn]],
    *,
    platform: Platform,
    local_now: dt.datetime,
    newest: dt.datetime | None,
    earliest: dt.date | None,
    used_elsewhere: Mapping[str, str],
) -> list[Refusal]:
    """Every rule the new transactions (with their index in the request) break; empty when all may go.
    ``earliest`` is the platform's window (``holds.earliest_date``); None when it has none."""
    found: list[Refusal] = []
    latest = newest
    for index, transaction in transactions:
        where, date = f"transactions.{index}", transaction.date
        date_rule = _date_rule(date, local_now, earliest, newest, latest)
        if date_rule:
            context = {"now": local_now, "earliest": earliest, "newest": newest, "latest": latest}
            shown = {"window": window(platform)} if date_rule == "before_earliest_date" else {}
            found.append(_refusal(f"{where}.date", date_rule, date=date, **context, **shown))
        else:  # a refused date would only make the ones after it look out of order
            latest = max(latest, date) if latest else date
        sign = SIGNS.get(transaction.transaction_type)
        if sign is not None and transaction.amount * sign <= 0:
            wanted = "positive" if sign > 0 else "negative"
            kind, amount = transaction.transaction_type, transaction.amount
            found.append(_refusal(f"{where}.amount", "sign_mismatch", kind=kind, sign=wanted, amount=amount))
        if transaction.id in used_elsewhere:
            found.append(_refusal(f"{where}.id", "id_in_use", owner=used_elsewhere[transaction.id]))
    return found


def _date_rule(
    when: dt.datetime,
    local_now: dt.datetime,
    earliest: dt.date | None,
    newest: dt.datetime | None,
    latest: dt.datetime | None,
) -> str | None:
    """The first date rule broken: future, then too old, then older than the account's newest, then order."""
    if when > local_now:
        return "future_date"
    if earliest is not None and when.date() < earliest:
        return "before_earliest_date"
    if newest is not None and when < newest:
        return "older_than_newest"
    if latest is not None and when < latest:
        return "not_chronological"
    return None


def _refusal(field: str, rule: str, **facts: object) -> Refusal:
    shown = {
        k: v.isoformat(timespec="seconds") if isinstance(v, dt.datetime) else v for k, v in facts.items()
    }
    return Refusal(field, rule, EXPLANATIONS[rule].format(**shown))
