"""Webhooks: events of the store's outbox delivered to the app (README "Webhooks")."""
