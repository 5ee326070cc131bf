"""The Codat adapter: client, wire schemas and errors. Imports neither FastAPI nor SQLAlchemy."""

from app.codat.client import CodatClient, build_http_client
from app.codat.deadline import codat_deadline
from app.codat.exceptions import CodatConflict, CodatError, CodatNotFound, CodatRejected, CodatUnavailable

__all__ = [
    "CodatClient",
    "CodatConflict",
    "CodatError",
    "CodatNotFound",
    "CodatRejected",
    "CodatUnavailable",
    "build_http_client",
    "codat_deadline",
]
