"""draftsync for the programs that use it: `draftsync.client.DraftClient` opens a draft from
Python, edits it as a pycrdt document and waits for the server's write acknowledgement.

The server itself is the `server` package (`draftsync serve`); see README "Python clients".
"""
