"""Gateway models: measurement rollups and governance actions the gateway enforces."""
