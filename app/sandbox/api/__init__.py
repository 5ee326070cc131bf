"""Codat's API, on Codat's paths, for the operations the BFF uses.

Path parameters keep Codat's names (``companyId``, ``connectionId``…) so routes read like the spec.
"""

from fastapi.routing import APIRoute

from app.sandbox.api import companies, connections, mapping, platform, sage, source_accounts, transactions

# In the order FastAPI tries them. The push calls, two for every push the BFF's worker makes, go first: each
# route tried before the right one costs a regular expression; no path they take matches another route
# (tests/sandbox/test_routes.py), so which route answers a request does not depend on it.
_ROUTERS = [
    transactions.router,
    companies.router,
    connections.router,
    source_accounts.router,
    platform.router,
    mapping.router,
    sage.router,
]

# The routes themselves, for the app to hold directly: FastAPI matches an included router's routes again at
# each level it is included through (about a tenth of a call's CPU here).
ROUTES = [route for r in _ROUTERS for route in r.routes if isinstance(route, APIRoute)]

OPERATION_IDS = frozenset(route.operation_id for route in ROUTES if route.operation_id)
