"""draftsync's benchmark suite: `python -m bench` or `draftsync bench`.

Two benches, each printing a table, writing JSON and drawing a PNG into `--out`:

    persistence   group commit vs one commit per update vs relaxed; cold load of a draft
    merge         real editing traces through a bare pycrdt Doc and through draftsync's room

Everything runs in-process against the real `server` classes (Store, CommitPipeline, Room,
Connection) so that the figures move when the server code does, without the noise of sockets.
"""
