"""Reading Yjs update v1 headers without a Doc.

An update starts with its struct groups, one per client::

    varUint numClientGroups
    per group: varUint numStructs, varUint client, varUint clock, structs...
    delete set: varUint numClients, per client: varUint client, varUint numRanges, ranges...
"""

from __future__ import annotations

from crdt.lib0 import Reader

__all__ = ["first_client_id"]


def first_client_id(update: bytes) -> int | None:
    """The Yjs client id of the first struct group, None for a delete-only update.

    Used to record which client wrote an update; reads three varUints, not the whole update.
    """
    reader = Reader(update)
    if reader.read_var_uint() == 0:
        return None
    reader.read_var_uint()  # numStructs
    return reader.read_var_uint()
