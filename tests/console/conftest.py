from tests.events.conftest import events, receiver  # noqa: F401 - fixtures
from tests.transactions.conftest import connected, tx_headers, worker  # noqa: F401 - fixtures
