"""Every SQL statement both store backends run, each written once (see `server.store.dialect`).

`SqliteStore` and `PostgresStore` render these with their dialect when their modules load;
a backend module keeps only what is its own and says so: SQLite's PRAGMAs, transactions and
schema history, PostgreSQL's advisory locks, row locks, arrays and `draft_activity` trigger.
tests/server/test_sql_written_once.py fails if a backend writes one of these again.

Parameters are passed by position in the order they first appear (`Statement.parameters`):
the `as_row()` of `UpdateRecord` and `JournalEvent`, `outbox_rows`, and the tuples of the
backends follow the column order below. `user` is quoted everywhere: PostgreSQL reserves it,
and SQLite reads a quoted name that is a column as that column.
"""

from __future__ import annotations

from server.store.dialect import Statement

__all__ = [
    "ACCESS_BY_USER",
    "ACCESS_LIST",
    "ACCESS_TABLE",
    "ADD_CONTRIBUTOR",
    "ANY_DUE",
    "ATTEMPTS_PAGE",
    "CLAIM",
    "CONTENT_TABLES",
    "CONTRIBUTORS",
    "CONTRIBUTORS_TABLE",
    "DELETE_SNAPSHOT",
    "DELIVERIES_PAGE",
    "DRAFTS_OWNED",
    "DRAFTS_TABLE",
    "DRAFTS_TOMBSTONES",
    "DRAFT_EXISTS",
    "DRAFT_RECORD",
    "DROP_ACCESS",
    "EVENTS_BY_TYPE",
    "EVENTS_OF_TYPE",
    "EVENTS_PAGE",
    "EVENTS_TABLES",
    "EVENT_COUNTS",
    "FORGET_ATTEMPTS",
    "FORGET_DELIVERIES",
    "INSERT_ATTEMPT",
    "INSERT_CURSOR",
    "INSERT_DRAFT",
    "INSERT_EVENT",
    "INSERT_LIVE_UPDATE",
    "INSERT_OUTBOX",
    "INSERT_OWNER",
    "INSERT_SNAPSHOT",
    "INSERT_UPDATE",
    "JOURNAL_WATERMARK",
    "LAST_VERSION",
    "LOAD",
    "LOAD_OPENING",
    "META_TABLE",
    "MOVE_CURSOR",
    "OPENING",
    "OWNER_COUNT",
    "PENDING_CHANGES",
    "PURGE",
    "REACHABLE_CONFLICT_FIELDS",
    "REACHABLE_DRAFTS",
    "RECORD_SCHEMA_VERSION",
    "REMOVE_ROLE",
    "ROLE_OF",
    "SAVE_META",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_TABLE",
    "SET_OUTCOME",
    "SET_ROLE",
    "SET_WATERMARK",
    "SNAPSHOTS_TABLE",
    "SNAPSHOT_VERSIONS",
    "TEXT_EVENTS_SINCE",
    "TOMBSTONE",
    "UPDATES_BETWEEN",
    "UPDATES_TABLE",
    "UPDATES_WITH_ORIGIN",
    "USERS_BETWEEN",
    "WEBHOOK_TABLES",
    "claim_of",
    "pending_changes_of",
]

# -- schema: the tables both backends have, in the types each has always had -----------------
# (Each backend's migration list orders these; SQLite's also keeps its own history.)

SCHEMA_VERSION_TABLE = Statement(
    "CREATE TABLE IF NOT EXISTS schema_version (version {integer} NOT NULL)"
)
SCHEMA_VERSION = Statement("SELECT COALESCE(MAX(version), 0) FROM schema_version")
RECORD_SCHEMA_VERSION = Statement("INSERT INTO schema_version (version) VALUES (:version)")

DRAFTS_TABLE = Statement("""
    CREATE TABLE drafts (
        id {text}{bytewise} PRIMARY KEY,
        owner {text} NOT NULL,
        created_at {real} NOT NULL
    );
""")
DRAFTS_TOMBSTONES = Statement("ALTER TABLE drafts ADD COLUMN deleted_at {real};")
ACCESS_TABLE = Statement("""
    CREATE TABLE access (
        draft_id {text}{bytewise} NOT NULL REFERENCES drafts(id),
        "user" {text}{bytewise} NOT NULL,
        role {text} NOT NULL,
        PRIMARY KEY (draft_id, "user")
    ){without_rowid};
""")
ACCESS_BY_USER = Statement('CREATE INDEX access_by_user ON access ("user", draft_id);')
UPDATES_TABLE = Statement("""
    CREATE TABLE updates (
        draft_id {text} NOT NULL,
        version {bigint} NOT NULL,
        data {blob} NOT NULL,
        "user" {text} NOT NULL,
        session {text} NOT NULL,
        client_id {bigint},
        created_at {real} NOT NULL,
        PRIMARY KEY (draft_id, version)
    ){without_rowid};
""")
SNAPSHOTS_TABLE = Statement("""
    CREATE TABLE snapshots (
        draft_id {text} NOT NULL,
        version {bigint} NOT NULL,
        data {blob} NOT NULL,
        created_at {real} NOT NULL,
        PRIMARY KEY (draft_id, version)
    ){without_rowid};
""")
CONTRIBUTORS_TABLE = Statement("""
    CREATE TABLE draft_contributors (
        draft_id {text} NOT NULL,
        "user" {text}{bytewise} NOT NULL,
        PRIMARY KEY (draft_id, "user")
    ){without_rowid};
""")
META_TABLE = Statement("""
    CREATE TABLE draft_meta (
        draft_id {text} PRIMARY KEY,
        version {bigint} NOT NULL,
        fields_key {text} NOT NULL,
        word_count {bigint} NOT NULL,
        filled_fields {bigint} NOT NULL,
        open_conflicts {bigint} NOT NULL
    ){without_rowid};
""")
# The journal (events derived from updates) and how far text bursts are journaled.
EVENTS_TABLES = Statement("""
    CREATE TABLE events (
        id {serial},
        draft_id {text} NOT NULL,
        version {bigint} NOT NULL,
        type {text} NOT NULL,
        "user" {text},
        session {text},
        client_id {bigint},
        at {real} NOT NULL,
        data {text} NOT NULL
    );
    CREATE INDEX events_by_draft ON events (draft_id, id);
    CREATE TABLE journal_state (
        draft_id {text} PRIMARY KEY,
        text_watermark {bigint} NOT NULL
    ){without_rowid};
""")
# Events of one type (named versions, sessions, conflicts) read without a journal scan.
EVENTS_BY_TYPE = Statement("CREATE INDEX events_by_type ON events (draft_id, type, id);")
WEBHOOK_TABLES = Statement("""
    CREATE TABLE webhook_outbox (
        id {serial},
        event_id {text} NOT NULL,
        url {text} NOT NULL,
        draft_id {text} NOT NULL,
        type {text} NOT NULL,
        payload {text} NOT NULL,
        created_at {real} NOT NULL,
        next_attempt_at {real} NOT NULL,
        status {text} NOT NULL DEFAULT 'pending',
        attempts {integer} NOT NULL DEFAULT 0,
        last_error {text}
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
    CREATE INDEX webhook_outbox_by_draft ON webhook_outbox (draft_id, id);
    CREATE TABLE webhook_attempts (
        outbox_id {bigint} NOT NULL,
        attempt {integer} NOT NULL,
        at {real} NOT NULL,
        status_code {integer},
        error {text},
        seconds {real} NOT NULL,
        PRIMARY KEY (outbox_id, attempt)
    ){without_rowid};
    CREATE TABLE webhook_cursors (
        draft_id {text} PRIMARY KEY,
        version {bigint} NOT NULL
    ){without_rowid};
""")

# -- drafts and access --------------------------------------------------------------------

# No RETURNING: a row counted (SQLite's rowcount, PostgreSQL's "INSERT 0 1") says who won.
INSERT_DRAFT = Statement(
    "INSERT INTO drafts (id, owner, created_at) VALUES (:draft_id, :owner, :now)"
    " ON CONFLICT (id) DO NOTHING"
)
INSERT_OWNER = Statement(
    "INSERT INTO access (draft_id, \"user\", role) VALUES (:draft_id, :owner, 'owner')"
)
DRAFT_EXISTS = Statement("SELECT 1 FROM drafts WHERE id = :draft_id")
DRAFT_RECORD = Statement("""
    SELECT d.id, d.owner, d.created_at, d.deleted_at, {last_modified}
    FROM drafts d {activity_join} WHERE d.id = :draft_id
""")
REACHABLE_DRAFTS = Statement("""
    SELECT d.id, a.role, d.owner, d.created_at,
           COALESCE({last_version}, 0), COALESCE({last_modified}, d.created_at),
           m.version, m.fields_key, m.word_count, m.filled_fields, m.open_conflicts
    FROM access a
    JOIN drafts d ON d.id = a.draft_id
    {activity_join}
    LEFT JOIN draft_meta m ON m.draft_id = a.draft_id
    WHERE a."user" = :user AND a.draft_id > :after AND d.deleted_at IS NULL
    ORDER BY a.draft_id{bytewise} LIMIT :limit
""")
ROLE_OF = Statement('SELECT role FROM access WHERE draft_id = :draft_id AND "user" = :user')
DRAFTS_OWNED = Statement("SELECT COUNT(*) FROM access WHERE \"user\" = :user AND role = 'owner'")
ACCESS_LIST = Statement(
    'SELECT "user", role FROM access WHERE draft_id = :draft_id ORDER BY "user"{bytewise}'
)
# A tombstoned draft gets no new access.
SET_ROLE = Statement("""
    INSERT INTO access (draft_id, "user", role)
    SELECT :draft_id, :user, :role
    WHERE EXISTS (SELECT 1 FROM drafts WHERE id = :draft_id AND deleted_at IS NULL)
    ON CONFLICT (draft_id, "user") DO UPDATE SET role = excluded.role
""")
REMOVE_ROLE = Statement('DELETE FROM access WHERE draft_id = :draft_id AND "user" = :user')
OWNER_COUNT = Statement("SELECT COUNT(*) FROM access WHERE draft_id = :draft_id AND role = 'owner'")
TOMBSTONE = Statement(
    "UPDATE drafts SET deleted_at = :now WHERE id = :draft_id AND deleted_at IS NULL"
)
DROP_ACCESS = Statement("DELETE FROM access WHERE draft_id = :draft_id")
# What `purge_content` removes (PostgreSQL's own `draft_activity` row too, in its module).
CONTENT_TABLES = ("updates", "snapshots", "draft_meta", "draft_contributors", "webhook_cursors")
PURGE = tuple(
    Statement(f"DELETE FROM {table} WHERE draft_id = :draft_id") for table in CONTENT_TABLES
)
CONTRIBUTORS = Statement(
    'SELECT "user" FROM draft_contributors WHERE draft_id = :draft_id ORDER BY "user"{bytewise}'
)
# SQLite's commit adds contributors; PostgreSQL's trigger on `updates` does.
ADD_CONTRIBUTOR = Statement(
    'INSERT INTO draft_contributors (draft_id, "user") VALUES (:draft_id, :user)'
    " ON CONFLICT DO NOTHING"
)
# An older version never overwrites; a tombstoned draft gets none.
SAVE_META = Statement("""
    INSERT INTO draft_meta
        (draft_id, version, fields_key, word_count, filled_fields, open_conflicts)
    SELECT :draft_id, :version, :fields_key, :word_count, :filled_fields, :open_conflicts
    WHERE EXISTS (SELECT 1 FROM drafts WHERE id = :draft_id AND deleted_at IS NULL)
    ON CONFLICT (draft_id) DO UPDATE SET
        version = excluded.version, fields_key = excluded.fields_key,
        word_count = excluded.word_count, filled_fields = excluded.filled_fields,
        open_conflicts = excluded.open_conflicts
    WHERE excluded.version >= draft_meta.version
""")

# -- the update log and snapshots ---------------------------------------------------------

INSERT_UPDATE = Statement(
    'INSERT INTO updates (draft_id, version, data, "user", session, client_id, created_at)'
    " VALUES (:draft_id, :version, :data, :user, :session, :client_id, :created_at)"
)
# PostgreSQL's group commit: several instances commit to one draft, and the one deleting it
# does not wait for another's commit; one that took the draft's versions lock after the purge
# stores nothing (a tombstoned draft's content stays deleted).
INSERT_LIVE_UPDATE = Statement(
    'INSERT INTO updates (draft_id, version, data, "user", session, client_id, created_at)'
    " SELECT :draft_id, :version, :data, :user, :session, :client_id, :created_at"
    " WHERE EXISTS (SELECT 1 FROM drafts WHERE id = :draft_id AND deleted_at IS NULL)"
)
LAST_VERSION = Statement("SELECT COALESCE(MAX(version), 0) FROM updates WHERE draft_id = :draft_id")
UPDATES_BETWEEN = Statement(
    "SELECT data FROM updates WHERE draft_id = :draft_id AND version > :after"
    " AND version <= :upto ORDER BY version"
)
UPDATES_WITH_ORIGIN = Statement(
    'SELECT version, data, "user", session, client_id, created_at FROM updates'
    " WHERE draft_id = :draft_id AND version > :after AND version <= :upto ORDER BY version"
)
# Who wrote a range of versions (a `draft.changed` event's users), without reading the updates.
USERS_BETWEEN = Statement(
    'SELECT DISTINCT "user" FROM updates'
    " WHERE draft_id = :draft_id AND version > :after AND version <= :upto"
)
# A draft's latest snapshot at or before :upto and the log after it, in one statement (one
# trip to aiosqlite's thread or to the server, and one consistent read): the snapshot row
# (kind 0), then the tail (kind 1), by version: the tail starts after the snapshot.
LOAD = Statement("""
    WITH snap AS (
        SELECT version, data FROM snapshots WHERE draft_id = :draft_id AND version <= :upto
        ORDER BY version DESC LIMIT 1
    )
    SELECT 0, version, data FROM snap
    UNION ALL
    SELECT 1, version, data FROM updates
    WHERE draft_id = :draft_id AND version > COALESCE((SELECT version FROM snap), 0)
      AND version <= :upto
    ORDER BY 2
""")
# `LOAD` at the latest version for a room that opens, with the draft's journal watermark as a
# last row (kind 2, none when nothing is recorded): opening a draft after a restart is one trip
# to the store, not two (issue 24: the watermark says whether journal recovery is needed).
LOAD_OPENING = Statement("""
    WITH snap AS (
        SELECT version, data FROM snapshots WHERE draft_id = :draft_id
        ORDER BY version DESC LIMIT 1
    )
    SELECT 0, version, data FROM snap
    UNION ALL
    SELECT 1, version, data FROM updates
    WHERE draft_id = :draft_id AND version > COALESCE((SELECT version FROM snap), 0)
    UNION ALL
    SELECT 2, text_watermark, NULL FROM journal_state WHERE draft_id = :draft_id
    ORDER BY 1, 2
""")
# A joiner's role and, when they have one, what `LOAD_OPENING` reads, in one statement: opening
# a draft after a restart is one trip to the store, not one for the role and one for the draft
# (issue 24). Rows `(kind, version, data, role)`, ordered by kind then version: 0 the snapshot,
# 1 the tail, 2 the journal watermark (as `LOAD_OPENING`), 3 the role (its own column: TEXT
# beside BYTEA would not unite in PostgreSQL). No role row: nothing else is read, so a caller
# without access never makes the store read a draft (`records.opening_from_rows`).
OPENING = Statement("""
    WITH granted AS (
        SELECT role FROM access WHERE draft_id = :draft_id AND "user" = :user
    ), snap AS (
        SELECT version, data FROM snapshots
        WHERE draft_id = :draft_id AND EXISTS (SELECT 1 FROM granted)
        ORDER BY version DESC LIMIT 1
    )
    SELECT 0, version, data, NULL FROM snap
    UNION ALL
    SELECT 1, version, data, NULL FROM updates
    WHERE draft_id = :draft_id AND EXISTS (SELECT 1 FROM granted)
      AND version > COALESCE((SELECT version FROM snap), 0)
    UNION ALL
    SELECT 2, text_watermark, NULL, NULL FROM journal_state
    WHERE draft_id = :draft_id AND EXISTS (SELECT 1 FROM granted)
    UNION ALL
    SELECT 3, NULL, NULL, role FROM granted
    ORDER BY 1, 2
""")
SNAPSHOT_VERSIONS = Statement(
    "SELECT version FROM snapshots WHERE draft_id = :draft_id ORDER BY version"
)
# A tombstoned draft gets none: its room may still be loaded (its grace period, a snapshot
# job under way) after its content was purged, and what it holds is deleted content.
INSERT_SNAPSHOT = Statement(
    "INSERT INTO snapshots (draft_id, version, data, created_at)"
    " SELECT :draft_id, :version, :data, :now"
    " WHERE EXISTS (SELECT 1 FROM drafts WHERE id = :draft_id AND deleted_at IS NULL)"
    " ON CONFLICT (draft_id, version) DO UPDATE SET"
    " data = excluded.data, created_at = excluded.created_at"
)
DELETE_SNAPSHOT = Statement(
    "DELETE FROM snapshots WHERE draft_id = :draft_id AND version = :version"
)

# -- the journal --------------------------------------------------------------------------

_EVENT_COLUMNS = 'id, version, type, "user", session, client_id, at, data'
INSERT_EVENT = Statement(
    'INSERT INTO events (draft_id, version, type, "user", session, client_id, at, data)'
    " VALUES (:draft_id, :version, :type, :user, :session, :client_id, :at, :data)"
)
SET_WATERMARK = Statement(
    "INSERT INTO journal_state (draft_id, text_watermark) VALUES (:draft_id, :watermark)"
    " ON CONFLICT (draft_id) DO UPDATE SET text_watermark = excluded.text_watermark"
)
JOURNAL_WATERMARK = Statement("SELECT text_watermark FROM journal_state WHERE draft_id = :draft_id")
EVENTS_PAGE = Statement(
    f"SELECT {_EVENT_COLUMNS} FROM events"
    " WHERE draft_id = :draft_id AND id > :after ORDER BY id LIMIT :limit"
)
TEXT_EVENTS_SINCE = Statement(
    "SELECT \"user\", data FROM events WHERE draft_id = :draft_id AND type = 'FIELD_UPDATED'"
    " AND version >= :version AND {json:data.kind} = 'text' ORDER BY id"
)
EVENTS_OF_TYPE = Statement(
    f"SELECT {_EVENT_COLUMNS} FROM events"
    " WHERE draft_id = :draft_id AND type = :type ORDER BY id DESC LIMIT :limit"
)
EVENT_COUNTS = Statement(
    "SELECT type, COUNT(*) FROM events WHERE draft_id = :draft_id GROUP BY type"
)
# Conflicts opened per field over every live draft `user` has a role on (what REACHABLE_DRAFTS
# lists): one trip for `GET /api/stats`, each draft's rows read through `events_by_type`.
REACHABLE_CONFLICT_FIELDS = Statement("""
    SELECT {json:data.field}, COUNT(*) FROM events
    WHERE type = 'CONFLICT_OPENED' AND draft_id IN (
        SELECT a.draft_id FROM access a
        JOIN drafts d ON d.id = a.draft_id
        WHERE a."user" = :user AND d.deleted_at IS NULL
    )
    GROUP BY 1
""")

# -- the webhook outbox -------------------------------------------------------------------

INSERT_OUTBOX = Statement(
    "INSERT INTO webhook_outbox"
    " (event_id, url, draft_id, type, payload, created_at, next_attempt_at)"
    " VALUES (:event_id, :url, :draft_id, :type, :payload, :created_at, :next_attempt_at)"
)
INSERT_CURSOR = Statement(
    "INSERT INTO webhook_cursors (draft_id, version) VALUES (:draft_id, :version)"
    " ON CONFLICT DO NOTHING"
)
# A compare-and-set: two instances that scan one draft announce each range once.
MOVE_CURSOR = Statement(
    "UPDATE webhook_cursors SET version = :upto WHERE draft_id = :draft_id AND version = :after"
)
# Drafts whose committed versions pass their cursor; `{only}` narrows to some drafts.
_PENDING = """
    SELECT draft_id, announced, last_version, last_at, first_at FROM (
        SELECT c.draft_id AS draft_id, c.version AS announced,
            {last_version} AS last_version, {last_modified} AS last_at,
            (SELECT u.created_at FROM updates u WHERE u.draft_id = c.draft_id
             AND u.version > c.version ORDER BY u.version LIMIT 1) AS first_at
        FROM webhook_cursors c
        JOIN drafts d ON d.id = c.draft_id
        {activity_join}
        WHERE d.deleted_at IS NULL {only}
    ) pending WHERE last_version > announced AND first_at IS NOT NULL
"""
PENDING_CHANGES = Statement(_PENDING.replace("{only}", ""))


def pending_changes_of(count: int) -> Statement:
    """`PENDING_CHANGES` of `count` drafts, whose ids are its parameters."""
    if count < 1:
        raise ValueError("pending changes of no draft")
    ids = ", ".join(f":id{i}" for i in range(count))
    return Statement(_PENDING.replace("{only}", f"AND c.draft_id IN ({ids})"))


_ANY_DUE = (
    "SELECT 1 FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= :now{only}"
    " LIMIT 1"
)
ANY_DUE = Statement(_ANY_DUE.replace("{only}", ""))
_DELIVERY_COLUMNS = (
    "id, event_id, url, draft_id, type, payload, created_at, status, attempts,"
    " next_attempt_at, last_error"
)
# Each due delivery goes to one claimer; its lease (next_attempt_at) keeps others off it.
_CLAIM = f"""
    UPDATE webhook_outbox SET next_attempt_at = :lease_until
    WHERE id IN (SELECT id FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= :now
                 {{only}} ORDER BY next_attempt_at, id LIMIT :limit{{skip_locked}})
    RETURNING {_DELIVERY_COLUMNS}
"""
CLAIM = Statement(_CLAIM.replace("{only}", ""))


def claim_of(url: str | None, other_than: int = 0) -> tuple[Statement, Statement]:
    """`ANY_DUE` and `CLAIM` narrowed to the deliveries to one URL (`url`, its parameter
    `:url`), or to those to none of `other_than` URLs (parameters `:url0`, ...); either
    parameter follows `:now`. Neither: all of them."""
    only = ""
    if url is not None:
        only = " AND url = :url"
    elif other_than:
        only = f" AND url NOT IN ({', '.join(f':url{i}' for i in range(other_than))})"
    return Statement(_ANY_DUE.replace("{only}", only)), Statement(_CLAIM.replace("{only}", only))


# An attempt's row and its delivery's outcome (SET_OUTCOME, run next in the same transaction)
# are recorded together, and only by the holder of the current claim: its lease
# (`:lease_until`, the `next_attempt_at` its CLAIM set and returned) is still the row's. An
# attempt that outlived its lease finds the row claimed again (maybe delivered by then), or
# removed by retention (FORGET_DELIVERIES): no row is inserted, and its outcome is dropped too,
# so the history never shows an attempt the outcome ignored (a late "failed" under a delivered
# delivery). The store numbers the attempt, after the delivery's recorded ones, not the claimer
# (two claimers counted the same attempts when they claimed): unique and consecutive. The
# outbox row is locked ({for_update}; SQLite's BEGIN IMMEDIATE holds the whole database) so
# that no claim changes it before SET_OUTCOME, which then finds the same lease.
INSERT_ATTEMPT = Statement("""
    INSERT INTO webhook_attempts (outbox_id, attempt, at, status_code, error, seconds)
    SELECT o.id,
           (SELECT COALESCE(MAX(a.attempt), 0) + 1 FROM webhook_attempts a
            WHERE a.outbox_id = o.id),
           :at, :status_code, :error, :seconds
    FROM webhook_outbox o
    WHERE o.id = :outbox_id AND o.status = 'pending' AND o.next_attempt_at = :lease_until
    {for_update}
""")
# Under the same lease as INSERT_ATTEMPT (see there). No row updated: the outcome is dropped (a
# late retry must not overwrite a newer claim's "delivered": the event would be sent again).
# `attempts` is the last recorded attempt's number (an outcome without one, a delivery given
# up, leaves it): the count the history shows.
SET_OUTCOME = Statement(
    "UPDATE webhook_outbox SET status = :status, next_attempt_at = :next_attempt_at,"
    " last_error = :error, attempts = {greatest}(attempts,"
    " (SELECT COALESCE(MAX(a.attempt), 0) FROM webhook_attempts a WHERE a.outbox_id = :id))"
    " WHERE id = :id AND status = 'pending' AND next_attempt_at = :lease_until"
)
DELIVERIES_PAGE = Statement(
    f"SELECT {_DELIVERY_COLUMNS} FROM webhook_outbox WHERE draft_id = :draft_id AND id > :after"
    " ORDER BY id LIMIT :limit"
)
ATTEMPTS_PAGE = Statement("""
    SELECT outbox_id, attempt, at, status_code, error, seconds FROM webhook_attempts
    WHERE outbox_id IN (SELECT id FROM webhook_outbox WHERE draft_id = :draft_id AND id > :after
                        ORDER BY id LIMIT :limit)
    ORDER BY outbox_id, attempt
""")
# Retention (server/webhooks/retention.py): up to :limit finished deliveries whose outcome
# (next_attempt_at: the start of the last attempt) is older than :before, their ids returned
# so that their attempts go in the same transaction. The range on `webhook_outbox_due`
# (status, next_attempt_at) finds them; no ORDER BY, which would sort every expired row of
# both statuses. Pending rows are never taken, however old.
FORGET_DELIVERIES = Statement("""
    DELETE FROM webhook_outbox
    WHERE id IN (SELECT id FROM webhook_outbox
                 WHERE status IN ('delivered', 'failed') AND next_attempt_at < :before
                 LIMIT :limit{skip_locked})
    RETURNING id
""")
FORGET_ATTEMPTS = Statement("DELETE FROM webhook_attempts WHERE outbox_id = :outbox_id")
