"""The order of Codat's routes: the push calls are tried first (app/sandbox/api/__init__.py), which may change
which operation answers a request only if a path can match one of them and another route too."""

from itertools import product

from app.sandbox.api import ROUTES, transactions


def segments(path: str) -> list[str | None]:
    """The path template's segments, None for a parameter (each matches one segment: ``[^/]+``)."""
    return [None if s.startswith("{") else s for s in path.split("/")]


def overlap(a: str, b: str) -> bool:
    """Whether some path matches both templates."""
    sa, sb = segments(a), segments(b)
    return len(sa) == len(sb) and all(x is None or y is None or x == y for x, y in zip(sa, sb, strict=True))


def test_the_overlap_check_sees_overlapping_templates() -> None:
    bank_feed_accounts = "/companies/{companyId}/connections/{connectionId}/connectionInfo/bankFeedAccounts"
    assert overlap(bank_feed_accounts + "/credentials", bank_feed_accounts + "/{accountId}")
    assert not overlap("/companies/{companyId}/push", "/companies/{companyId}/connections")


def test_no_path_of_the_push_calls_matches_another_codat_route() -> None:
    first = list(transactions.router.routes)
    others = [route for route in ROUTES if route not in first]
    assert all(":" not in route.path for route in ROUTES)  # only plain parameters: one segment each
    clashes = [(a.path, b.path) for a, b in product(first, others) if overlap(a.path, b.path)]
    assert clashes == []
