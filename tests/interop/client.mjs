// One real Yjs editor: a Y.Doc synced by y-websocket's WebsocketProvider, driven by a parent
// process (tests/support/node_client.py) over JSON lines.
//
//   node client.mjs --url ws://127.0.0.1:PORT/ws --room DRAFT_ID --token TOKEN [--name NAME] [--no-connect]
//
// stdin:  one command a line, {"id": N, "op": "...", ...args}
// stdout: one reply per command, {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": "..."},
//         and unsolicited events, {"event": "...", ...}
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider, messageAuth } from 'y-websocket'
import { readAuthMessage } from 'y-protocols/auth'

const { values: argv } = parseArgs({
  options: {
    url: { type: 'string' },
    room: { type: 'string' },
    token: { type: 'string' },
    name: { type: 'string' },
    'no-connect': { type: 'boolean', default: false }
  }
})
for (const required of ['url', 'room', 'token']) {
  if (argv[required] === undefined) {
    console.error(`missing --${required}`)
    process.exit(2)
  }
}

const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n')

const doc = new Y.Doc()
// Built with connect: false and connected below, once every listener is attached: the constructor
// would emit the first 'connecting' status before we could listen (connect() is all it would do).
const provider = new WebsocketProvider(argv.url, argv.room, doc, {
  params: { token: argv.token },
  WebSocketPolyfill: WebSocket,
  connect: false
})

provider.on('status', ({ status }) => emit({ event: 'status', status }))
provider.on('synced', (synced) => emit({ event: 'synced', synced }))
// event is the ws CloseEvent (numeric code, reason string), or null when the provider closed the
// socket itself (disconnect(), destroy(), or its 30 s no-message watchdog)
provider.on('connection-close', (event) => emit({
  event: 'close',
  code: event?.code ?? null,
  reason: event?.reason ?? null,
  wasClean: event?.wasClean ?? null,
  local: event == null
}))
// the provider gave up reconnecting (by default after a close code in 4400-4499)
provider.on('closed', ({ code, reason }) => emit({ event: 'closed', code, reason }))
provider.on('connection-error', (event) => emit({ event: 'connection-error', message: event?.message ?? String(event) }))
// y-websocket only console.warns a permission-denied auth message; report it to the parent instead
provider.messageHandlers[messageAuth] = (_encoder, decoder) =>
  readAuthMessage(decoder, doc, (_doc, reason) => emit({ event: 'permission-denied', reason }))

if (argv.name !== undefined) {
  provider.awareness.setLocalStateField('user', { name: argv.name })
}

/** Root Y.Texts, including roots only a remote update created (plain AbstractTypes holding strings). */
const rootTexts = () => {
  for (const [name, type] of doc.share) {
    if (type.constructor === Y.AbstractType) {
      for (let item = type._start; item !== null; item = item.right) {
        if (item.content instanceof Y.ContentString) {
          doc.getText(name)
          break
        }
      }
    }
  }
  return [...doc.share].filter(([, type]) => type instanceof Y.Text).map(([name]) => name)
}

const waitSynced = (timeoutMs = 10000) => new Promise((resolve, reject) => {
  if (provider.synced) return resolve(true)
  const onSynced = (synced) => {
    if (!synced) return
    clearTimeout(timer)
    provider.off('synced', onSynced)
    resolve(true)
  }
  const timer = setTimeout(() => {
    provider.off('synced', onSynced)
    reject(new Error(`not synced after ${timeoutMs} ms`))
  }, timeoutMs)
  provider.on('synced', onSynced)
})

const toBase64 = (bytes) => Buffer.from(bytes).toString('base64')

const ops = {
  insert: ({ field, index, text }) => { doc.getText(field).insert(index, text) },
  delete: ({ field, index, length }) => { doc.getText(field).delete(index, length) },
  set: ({ key, value }) => { doc.getMap('fields').set(key, value) },
  remove: ({ key }) => { doc.getMap('fields').delete(key) },
  push: ({ field, values }) => { doc.getArray(field).push(values) },
  remove_list: ({ field, index, length }) => { doc.getArray(field).delete(index, length) },
  state: ({ texts = [], lists = [] }) => ({
    texts: Object.fromEntries([...new Set([...rootTexts(), ...texts])].map((name) => [name, doc.getText(name).toString()])),
    fields: doc.getMap('fields').toJSON(),
    lists: Object.fromEntries(lists.map((name) => [name, doc.getArray(name).toJSON()])),
    conflicts: doc.getMap('conflicts').toJSON(),
    synced: provider.synced,
    wsconnected: provider.wsconnected,
    clientID: doc.clientID,
    stateVector: toBase64(Y.encodeStateVector(doc))
  }),
  update: () => toBase64(Y.encodeStateAsUpdate(doc)),
  disconnect: () => { provider.disconnect() },
  connect: () => { provider.connect() },
  wait_synced: ({ timeout_ms: timeoutMs }) => waitSynced(timeoutMs),
  awareness_set: ({ field, value }) => { provider.awareness.setLocalStateField(field, value) },
  awareness_states: () => [...provider.awareness.getStates()],
  exit: () => {
    provider.destroy()
    setImmediate(() => process.exit(0))
  }
}

const run = async ({ id = null, op, ...args }) => {
  try {
    if (!Object.hasOwn(ops, op)) throw new Error(`unknown op ${JSON.stringify(op)}`)
    const result = await ops[op](args)
    emit({ id, ok: true, result: result ?? null })
  } catch (err) {
    emit({ id, ok: false, error: err instanceof Error ? err.message : String(err) })
  }
}

process.on('uncaughtException', (err) => {
  console.error(err)
  emit({ event: 'error', message: err.message })
})

createInterface({ input: process.stdin })
  .on('line', (line) => {
    let command
    try {
      command = JSON.parse(line)
    } catch (err) {
      return emit({ id: null, ok: false, error: `bad command: ${err.message}` })
    }
    run(command)
  })
  // the parent is gone: leave the room instead of lingering
  .on('close', () => ops.exit())

if (!argv['no-connect']) provider.connect()
emit({ event: 'ready' })
