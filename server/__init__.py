"""draftsync's running service: WebSocket sync endpoint, rooms, durable store, auth, CLI."""
