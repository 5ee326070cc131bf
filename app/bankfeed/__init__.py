"""The platform-neutral bank-feed core: what every target and every domain shares.

Businesses and their bank accounts, Codat's company, connection and source accounts for them (`models`,
`repository`), the view every surface reads and its stored and cached copies (`view`, `cache`), the
change feed and its event stream (`changes`, `stream`), why writes are held (`holds`), re-reading Codat
(`sync`) and the targets themselves (`platforms`). Onboarding, transactions, webhooks, events and the
console stand on it; it imports none of them (the contracts in pyproject.toml).
"""
