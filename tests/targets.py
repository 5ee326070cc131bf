"""What the SMB does at each bank-feed target's pages in the sandbox, driven over HTTP as a browser would:
the platform's OAuth consent for the platforms Codat maps, and Sage's Connect Bank with the code we gave."""

import httpx

from tests.factories import link_base, otp_of

MAPPING_PLATFORMS = ["xero", "netsuite", "freeagent", "exact"]
PLATFORMS = ["quickbooks-online", "sage", *MAPPING_PLATFORMS]


async def allow_access(client: httpx.AsyncClient, link_url: str) -> None:
    """Open the link and allow the connection on the platform's consent screen."""
    page = await client.get(link_url)
    assert page.status_code == 200, page.text
    allowed = await client.post(
        f"{link_base(link_url)}/consent", data={"otp": otp_of(link_url), "decision": "allow"}
    )
    assert allowed.status_code == 303, allowed.text


async def sign_in_to_sage(client: httpx.AsyncClient, sage_code: dict[str, str]) -> str:
    """Type the connection id and the one-time code into Sage's Connect Bank; answers Sage's session."""
    page = await client.post(
        "/sandbox/sage/sign-in", data={"connectionId": sage_code["connectionId"], "otp": sage_code["code"]}
    )
    assert page.status_code == 200, page.text
    return page.text.split('name="session" value="')[1].split('"')[0]


async def choose_in_sage(
    client: httpx.AsyncClient, session: str, account_ids: list[str], product: str = "Sage 50"
) -> None:
    chosen = await client.post(
        "/sandbox/sage/accounts", data={"session": session, "account": account_ids, "product": product}
    )
    assert chosen.status_code == 200, chosen.text


async def confirm_in_sage(client: httpx.AsyncClient, session: str, account_id: str) -> None:
    confirmed = await client.post("/sandbox/sage/confirm", data={"session": session, "account": account_id})
    assert confirmed.status_code == 200, confirmed.text
