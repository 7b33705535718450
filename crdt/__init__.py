"""Pure CRDT logic for draftsync: no I/O, no asyncio, no clock reads.

Modules import only the standard library and pycrdt, and each other without cycles; import from
the module that defines a name (``from crdt.protocol import decode_message``): this package is
deliberately not a barrel.

- ``crdt.errors``: the exception hierarchy.
- ``crdt.lib0``: lib0 varUint / varUint8Array / varString reading and writing.
- ``crdt.protocol``: y-protocols messages (sync, awareness, auth, query awareness, write ack).
- ``crdt.awareness``: awareness-update payloads.
- ``crdt.bulk_array``: a list written as one Yjs item, duplicates deleted by runs (linear).
- ``crdt.safe_json``: JSON text of any value for journal rows, never raising.
"""
