// The Hocuspocus server of `draftsync bench relay`: @hocuspocus/server 4.7.0 with its SQLite
// extension (@hocuspocus/extension-sqlite 4.7.0, better-sqlite3), default settings otherwise
// (onStoreDocument debounced 2 s, at most 10 s). Any token is accepted.
//
//   node hocuspocus_server.mjs <port> <database file>
import { Server } from '@hocuspocus/server'
import { SQLite } from '@hocuspocus/extension-sqlite'

const port = Number(process.argv[2])
const database = process.argv[3]
const server = new Server({
  port,
  address: '127.0.0.1',
  quiet: true,
  extensions: [new SQLite({ database })],
  async onAuthenticate () {} // no auth: every token is good
})
await server.listen()
