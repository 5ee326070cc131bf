"""Codat's API, on Codat's paths, for the operations the BFF uses.

Path parameters keep Codat's names (``companyId``, ``connectionId``…) so routes read like the spec.
"""

from fastapi import APIRouter
from fastapi.routing import APIRoute

from app.sandbox.api import companies, connections, mapping, platform, sage, source_accounts, transactions

_ROUTERS = [
    companies.router,
    connections.router,
    source_accounts.router,
    platform.router,
    transactions.router,
    mapping.router,
    sage.router,
]

router = APIRouter()
for _module_router in _ROUTERS:
    router.include_router(_module_router)

OPERATION_IDS = frozenset(
    route.operation_id
    for r in _ROUTERS
    for route in r.routes
    if isinstance(route, APIRoute) and route.operation_id
)
