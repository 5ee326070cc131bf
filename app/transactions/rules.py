"""QuickBooks Online's rules for cleared transactions (Codat's QBO Bank Feeds docs), checked before we accept.

Pure functions: the caller gives the business's local now and what the account already has. Each refusal
names the transaction's field and the rule, e.g. ``transactions.3.date`` / ``future_date: …``.

- ``future_date``: no transaction dated after now, in the business's time zone;
- ``before_earliest_date``: the date is the cleared date, and QBO takes today's or yesterday's; on the
  account's first write, history back to 7 days before its feed start date (``holds.earliest_date``);
- ``older_than_newest``: nothing older than the newest transaction already accepted for the account;
- ``not_chronological``: a request lists its transactions earliest first. We refuse rather than sort:
  the balance of the last transaction becomes the account's balance in QBO, so the caller's order matters;
- ``sign_mismatch``: a Credit has a positive amount, a Debit a negative one (Unknown: either);
- ``id_in_use``: Codat ids are unique per company, so an id another account already used is refused.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.transactions.schemas import TransactionIn

SIGNS = {"Credit": 1, "Debit": -1}
EXPLANATIONS = {
    "future_date": "{date} is after now ({now}) in the business's time zone",
    "before_earliest_date": "{date} is before {earliest}, the earliest date this account takes now: "
    "QuickBooks takes today and yesterday, and on an account's first write 7 days before its feed start date",
    "older_than_newest": "{date} is older than {newest}, the newest transaction accepted for this account",
    "not_chronological": "{date} comes after {latest} in this request: send transactions earliest first",
    "sign_mismatch": "a {kind} needs a {sign} amount, not {amount}",
    "id_in_use": "account {owner!r} already has a transaction with this id",
}


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
    local_now: dt.datetime,
    newest: dt.datetime | None,
    earliest: dt.date,
    used_elsewhere: Mapping[str, str],
) -> list[Refusal]:
    """Every rule the new transactions (with their index in the request) break; empty when all may go."""
    found: list[Refusal] = []
    latest = newest
    for index, transaction in transactions:
        where, date = f"transactions.{index}", transaction.date
        date_rule = _date_rule(date, local_now, earliest, newest, latest)
        if date_rule:
            context = {"now": local_now, "earliest": earliest, "newest": newest, "latest": latest}
            found.append(_refusal(f"{where}.date", date_rule, date=date, **context))
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
    earliest: dt.date,
    newest: dt.datetime | None,
    latest: dt.datetime | None,
) -> str | None:
    """The first date rule broken: future, then too old, then older than the account's newest, then order."""
    if when > local_now:
        return "future_date"
    if when.date() < earliest:
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
