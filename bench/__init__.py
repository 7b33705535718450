"""draftsync's benchmark suite: `python -m bench` or `draftsync bench`.

Four benches, each printing a table, writing JSON and drawing a PNG into `--out`:

    persistence   group commit vs one commit per update vs relaxed; cold load of a draft
    merge         real editing traces through a bare pycrdt Doc and through draftsync's room
    relay         draftsync vs pycrdt-websocket vs the Node reference server, as real processes
                  driven by real Yjs clients (bench/node/)
    durability    kill -9 mid-flood and restart: did every relayed edit survive?

persistence and merge run in-process against the real `server` classes (Store, CommitPipeline,
Room, Connection) so that the figures move when the server code does, without the noise of
sockets; relay and durability run every server as its own process on loopback.
"""
