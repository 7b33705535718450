"""Durable storage: the store interface (`api.Store`), the SQLite and PostgreSQL backends,
the group commit, the SQLite log writer, snapshots and their retention."""
