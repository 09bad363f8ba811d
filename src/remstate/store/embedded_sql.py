"""Every SQL statement of the embedded store, in one place, with the layout it reads.

Design constraint: the statements are fixed text with parameters, never built
from values, so this module is the whole of what the store asks of SQLite. The
table layout is ``CREATE_TABLES``; a revision row is the etcd key-value pair
of one write (see ``embedded``). PRAGMAs, which take no parameters, stay beside
the code that sets them (``embedded_file``, ``embedded_compaction``).
"""

from __future__ import annotations

from typing import Final

# --- the tables -----------------------------------------------------------------------------

CREATE_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    # rv is the rowid: watch reads are range scans of the primary key. data is
    # the last column, so reading metadata never loads its overflow pages.
    """CREATE TABLE IF NOT EXISTS revisions (
        rv INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        event TEXT NOT NULL,
        uid TEXT NOT NULL,
        created TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        owners TEXT NOT NULL,
        -- bytes of the JSON columns (the watch window's measure; older rows: of data)
        size INTEGER NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS revisions_by_name
        ON revisions (namespace, name, rv, event)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 1)",  # SCHEMA_VERSION
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted', 1)",
)
SELECT_TABLES: Final = "SELECT name FROM sqlite_master WHERE type = 'table'"
SELECT_SCHEMA: Final = "SELECT value FROM meta WHERE key = 'schema'"

# --- objects and their revisions ------------------------------------------------------------

#: The event a revision row records.
ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"


# The first revision is 1, as etcd's: a list never answers "0", which means "any".
# Never below the compaction revision, as etcd's: a file whose newest row (a
# tombstone) was compacted by an older remstate goes on from there, not back.
SELECT_REVISION: Final = """
    SELECT MAX(COALESCE((SELECT MAX(rv) FROM revisions), 1),
               (SELECT value FROM meta WHERE key = 'compacted'))"""
SELECT_COMPACTED: Final = "SELECT value FROM meta WHERE key = 'compacted'"

SELECT_HEAD: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners
    FROM revisions WHERE namespace = ? AND name = ? ORDER BY rv DESC LIMIT 1"""
SELECT_HEAD_WITH_DATA: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners, data
    FROM revisions WHERE namespace = ? AND name = ? ORDER BY rv DESC LIMIT 1"""
SELECT_PREVIOUS_WITH_DATA: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners, data
    FROM revisions WHERE namespace = ? AND name = ? AND rv < ? ORDER BY rv DESC LIMIT 1"""
SAME_DATA: Final = "SELECT data = ? FROM revisions WHERE rv = ?"
SELECT_SIZE: Final = "SELECT size FROM revisions WHERE rv = ?"
INSERT: Final = """
    INSERT INTO revisions
        (rv, namespace, name, event, uid, created, labels, annotations, owners, size, data)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# A tombstone copies the last state, so the DELETED event can carry it.
INSERT_TOMBSTONE: Final = """
    INSERT INTO revisions
        (rv, namespace, name, event, uid, created, labels, annotations, owners, size, data)
    SELECT ?, namespace, name, 'DELETED', uid, created, labels, annotations, owners, size, data
    FROM revisions WHERE rv = ?"""

# The objects of a namespace at revision :snap, from name :start on, in name
# (etcd key) order: for each name its newest row at or below :snap, unless a tombstone.
SELECT_SNAPSHOT: Final = """
    SELECT r.rv, r.name, r.uid, r.created, r.labels, r.annotations, r.owners
    FROM revisions AS r
    WHERE r.namespace = :ns AND r.name >= :start AND r.rv <= :snap AND r.event != 'DELETED'
      AND r.rv = (SELECT MAX(p.rv) FROM revisions AS p
                  WHERE p.namespace = :ns AND p.name = r.name AND p.rv <= :snap)
    ORDER BY r.name"""
COUNT_SNAPSHOT: Final = """
    SELECT COUNT(*)
    FROM revisions AS r
    WHERE r.namespace = :ns AND r.name >= :start AND r.rv <= :snap AND r.event != 'DELETED'
      AND r.rv = (SELECT MAX(p.rv) FROM revisions AS p
                  WHERE p.namespace = :ns AND p.name = r.name AND p.rv <= :snap)"""
SELECT_DATA: Final = """
    SELECT rv, data FROM revisions WHERE rv IN (SELECT value FROM json_each(?))"""
SELECT_EVENTS: Final = """
    SELECT rv, event, uid, created, labels, annotations, owners, data, name
    FROM revisions WHERE rv > ? AND namespace = ? ORDER BY rv LIMIT ?"""

# Row layout of SELECT_HEAD(_WITH_DATA), SELECT_PREVIOUS_WITH_DATA and SELECT_EVENTS.
RV, EVENT, UID, CREATED, LABELS, ANNOTATIONS, OWNERS, DATA = range(8)

# --- compaction -----------------------------------------------------------------------------

SELECT_META: Final = "SELECT key, value FROM meta"
SET_META: Final = """
    INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value"""
SUM_SIZES: Final = "SELECT COALESCE(SUM(size), 0) FROM revisions WHERE rv > ? AND rv <= ?"
SIZES_BETWEEN: Final = "SELECT rv, size FROM revisions WHERE rv > ? AND rv < ? ORDER BY rv"
# Compaction to :new from :old. First every row superseded by a row of (:old, :new]
# (a tombstone supersedes too), then the tombstones of (:old, :new] themselves.
COMPACT_SUPERSEDED: Final = """
    DELETE FROM revisions WHERE rv IN (
        SELECT o.rv FROM revisions AS n JOIN revisions AS o
            ON o.namespace = n.namespace AND o.name = n.name AND o.rv < n.rv
        WHERE n.rv > :old AND n.rv <= :new)"""
COMPACT_TOMBSTONES: Final = """
    DELETE FROM revisions WHERE rv > :old AND rv <= :new AND event = 'DELETED'"""
