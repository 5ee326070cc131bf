"""Codat bodies taken from the examples of Codat's OpenAPI files (Bank Feeds 3.0.0, Platform)."""

COMPANY_ID = "ab12c58d-a678-4ebf-a159-ae99e1807bd0"
OTHER_COMPANY_ID = "846ed55c-974b-4392-a1f1-87b6fdbf3c5e"
CONNECTION_ID = "ee2eb431-c0fa-4dc9-93fa-d29781c12bcd"
OTP = "742271"
LINK_URL = f"https://link-api.codat.io/companies/{COMPANY_ID}/connections/{CONNECTION_ID}/start?otp={OTP}"
PASSWORD = "cO0ajh0uGyTN0Pwh"

COMPANY = {
    "id": COMPANY_ID,
    "name": "Technicalium",
    "description": "",
    "platform": "",
    "redirect": f"https://link.codat.io/company/{COMPANY_ID}",
    "dataConnections": [],
    "created": "2022-11-10T10:45:18.1950523Z",
    "createdByUserName": "Dan Tzabar",
    "products": ["spend-insights"],
    "tags": {"region": "us"},
    "referenceSubsidiaryCompanies": [],
}

CONNECTION = {
    "id": CONNECTION_ID,
    "integrationId": "bf083d72-62c7-493e-aec9-81b4dbba7e2c",
    "integrationKey": "hcws",
    "sourceId": "bdd831ce-eebd-4896-89a7-20e5ee8989ee",
    "platformName": "QuickBooks Online Bank Feeds",
    "linkUrl": LINK_URL,
    "status": "PendingAuth",
    "created": "2022-10-27T09:53:29Z",
    "sourceType": "BankFeed",
}

SOURCE_ACCOUNT = {
    "id": "acc-001",
    "accountName": "account-081",
    "accountType": "checking",
    "accountNumber": "12345670",
    "routingInfo": {"bankCode": "021001088", "type": "bankcode"},
    "currency": "USD",
    "balance": 99.99,
    "accountInfo": {
        "description": "account description 1",
        "nickname": "account 123",
        "accountOpenDate": "2023-05-06",
        "availableBalance": 10,
    },
    "modifiedDate": "2024-08-02T00:00:00.000Z",
    "status": "pending",
    "feedStartDate": "2024-05-01",
}

CREDENTIALS = {"username": "S0MW-TR0P-7DS0", "password": PASSWORD}

INTEGRATION = {
    "key": "hcws",
    "logoUrl": "https://static.codat.io/public/officialLogos/Square/hcws.png",
    "name": "QuickBooks Online Bank Feeds",
    "enabled": True,
    "sourceId": "bankfeeds",
    "sourceType": "BankFeed",
    "integrationId": "bf083d72-62c7-493e-aec9-81b4dbba7e2c",
    "isOfflineConnector": False,
    "isBeta": False,
    "datatypeFeatures": [],
}

SYNC_SETTINGS = {
    "clientId": "367f7975-267b-439b-90c6-a6040ee680f3",
    "settings": [
        {"dataType": "bankAccounts", "fetchOnFirstLink": True, "syncSchedule": 24, "syncOrder": 0},
        {"dataType": "bankTransactions", "fetchOnFirstLink": False, "syncSchedule": 24, "syncOrder": 1},
        {"dataType": "invoices", "fetchOnFirstLink": False, "syncSchedule": 0, "syncOrder": 2},
    ],
    "overridesDefaults": True,
}


def error(
    status: int, message: str = "Error processing request - not valid.", **extra: object
) -> dict[str, object]:
    return {
        "statusCode": status,
        "service": "PublicApi",
        "error": message,
        "correlationId": "bc997528a9d7abb9161ef45f05d38599",
        "canBeRetried": "Unknown",
        "detailedErrorCode": 0,
        **extra,
    }
