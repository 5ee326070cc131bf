"""bankfeeds-bff: put small businesses' bank feeds into QuickBooks Online through Codat."""
