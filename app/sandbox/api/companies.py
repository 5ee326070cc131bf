"""Companies: create, list, get, delete."""

from fastapi import APIRouter, Request, Response

from app.sandbox.api import query
from app.sandbox.api.paging import Paging
from app.sandbox.api.route import CodatRoute
from app.sandbox.api.schemas import CompanyRequest, parse_body
from app.sandbox.api.tags import parse_tag_filter
from app.sandbox.context import lifecycle, presenter, sandbox_state
from app.sandbox.errors import CodatError
from app.sandbox.models import Company
from app.sandbox.responses import JSONResponse
from app.sandbox.state import SandboxState

router = APIRouter(route_class=CodatRoute)


def require_company(state: SandboxState, company_id: str) -> Company:
    company = state.companies.get(company_id)
    if company is None:
        raise CodatError(404, f"No company was found with ID {company_id}")
    return company


@router.post("/companies", operation_id="create-company")
async def create_company(request: Request) -> JSONResponse:
    body = await parse_body(request, CompanyRequest, validator="CompanyValidator")
    state = sandbox_state(request)
    company = Company(state.new_id(), body.name, state.clock.now(), body.description, dict(body.tags))
    state.companies[company.id] = company
    lifecycle(request).company_created(company)
    return JSONResponse(presenter(request).company(company))


@router.get("/companies", operation_id="list-companies")
async def list_companies(request: Request) -> JSONResponse:
    paging = Paging.from_request(request)
    companies = list(sandbox_state(request).companies.values())
    if "tags" in request.query_params:
        matches = parse_tag_filter(request.query_params["tags"])
        companies = [c for c in companies if matches(c.tags)]
    companies = query.from_request(request, companies, _company_field)
    present = presenter(request)
    return JSONResponse(paging.envelope(companies, present.company, "/companies"))


@router.get("/companies/{companyId}", operation_id="get-company")
async def get_company(request: Request, companyId: str) -> JSONResponse:
    company = require_company(sandbox_state(request), companyId)
    return JSONResponse(presenter(request).company(company))


@router.delete("/companies/{companyId}", operation_id="delete-company", status_code=204)
async def delete_company(request: Request, companyId: str) -> Response:
    state = sandbox_state(request)
    company = require_company(state, companyId)
    state.remove_company(company)
    lifecycle(request).company_deleted(company)
    return Response(status_code=204)


_COMPANY_FIELDS: dict[str, query.Field[Company]] = {
    "id": query.Field(query.Kind.string, lambda c: c.id),
    "name": query.Field(query.Kind.string, lambda c: c.name),
    "description": query.Field(query.Kind.string, lambda c: c.description),
    "created": query.Field(query.Kind.date, lambda c: c.created),
    # Never synced: lastSync is always null, and querying on null is not supported.
    "lastSync": query.Field(query.Kind.date, lambda c: None),
}


def _company_field(name: str) -> query.Field[Company] | None:
    """A company's own fields, and ``tags.<key>`` (a sub-property)."""
    if name.startswith("tags."):
        key = name.removeprefix("tags.")
        return query.Field(query.Kind.string, lambda c: c.tags.get(key))
    return _COMPANY_FIELDS.get(name)
