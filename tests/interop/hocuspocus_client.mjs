// Real Hocuspocus providers (@hocuspocus/provider, unmodified) driven by a parent process
// (tests/support/hocuspocus_client.py) over JSON lines, in the style of client.mjs.
//
//   node hocuspocus_client.mjs --url ws://127.0.0.1:PORT/hocuspocus [--shared]
//
// Without --shared each `open` builds a HocuspocusProvider from url, name and token only (plus
// the `ws` WebSocket for Node 20), so each document has its own socket. With --shared every
// document is attached to one HocuspocusProviderWebsocket: many documents over one socket.
//
// stdin:  {"id": N, "op": "...", "doc": HANDLE, ...args}   (doc: the handle given to `open`)
// stdout: {"id": N, "ok": true, "result": ...} | {"id": N, "ok": false, "error": "..."},
//         and events {"event": "...", "doc": HANDLE, ...}
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'

const { values: argv } = parseArgs({
  options: {
    url: { type: 'string' },
    shared: { type: 'boolean', default: false }
  }
})
if (argv.url === undefined) {
  console.error('missing --url')
  process.exit(2)
}

const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n')

const socket = argv.shared
  ? new HocuspocusProviderWebsocket({ url: argv.url, WebSocketPolyfill: WebSocket })
  : null
if (socket !== null) {
  socket.on('status', ({ status }) => emit({ event: 'socket-status', status }))
  socket.on('open', () => emit({ event: 'socket-open' })) // once per WebSocket opened
  socket.on('disconnect', ({ event }) => emit({ event: 'socket-disconnect', code: event?.code ?? null, reason: event?.reason ?? null }))
}

const providers = new Map() // handle -> { provider, doc }

const open = ({ doc: handle, name, token, session_awareness: sessionAwareness = false, user }) => {
  if (providers.has(handle)) throw new Error(`document ${handle} is open already`)
  const doc = new Y.Doc()
  const settings = { name, token, document: doc }
  if (sessionAwareness) settings.sessionAwareness = true
  const provider = socket !== null
    ? new HocuspocusProvider({ ...settings, websocketProvider: socket })
    : new HocuspocusProvider({ ...settings, url: argv.url, WebSocketPolyfill: WebSocket })
  const on = (name, fn) => provider.on(name, (data) => emit({ event: name, doc: handle, ...fn(data ?? {}) }))
  on('status', ({ status }) => ({ status }))
  on('authenticated', ({ scope }) => ({ scope }))
  on('authenticationFailed', ({ reason }) => ({ reason }))
  on('synced', ({ state }) => ({ state }))
  on('unsyncedChanges', ({ number }) => ({ number }))
  on('close', ({ event }) => ({ code: event?.code ?? null, reason: event?.reason ?? null }))
  on('disconnect', ({ event }) => ({ code: event?.code ?? null, reason: event?.reason ?? null }))
  on('stateless', ({ payload }) => ({ payload }))
  // the provider ignores SyncStatus(0) (a refused write): report every SyncStatus it gets
  provider.on('message', ({ event }) => {
    const decoder = decoding.createDecoder(new Uint8Array(event.data))
    decoding.readVarString(decoder)
    if (decoding.readVarUint(decoder) === 8) {
      emit({ event: 'sync-status', doc: handle, applied: decoding.readVarInt(decoder) === 1 })
    }
  })
  if (user !== undefined) provider.setAwarenessField('user', { name: user })
  if (socket !== null) provider.attach()
  providers.set(handle, { provider, doc })
  return null
}

const get = (handle) => {
  const entry = providers.get(handle)
  if (entry === undefined) throw new Error(`no open document ${JSON.stringify(handle)}`)
  return entry
}

const waitFor = (provider, test, event, timeoutMs = 10000, what = event) => new Promise((resolve, reject) => {
  if (test()) return resolve(true)
  const check = () => {
    if (!test()) return
    clearTimeout(timer)
    provider.off(event, check)
    resolve(true)
  }
  const timer = setTimeout(() => {
    provider.off(event, check)
    reject(new Error(`not ${what} after ${timeoutMs} ms`))
  }, timeoutMs)
  provider.on(event, check)
})

const ownSocket = (handle) => {
  if (socket !== null) throw new Error('documents over --shared have no socket of their own')
  return get(handle).provider
}

const toBase64 = (bytes) => Buffer.from(bytes).toString('base64')

const ops = {
  open,
  insert: ({ doc, field, index, text }) => { get(doc).doc.getText(field).insert(index, text) },
  delete: ({ doc, field, index, length }) => { get(doc).doc.getText(field).delete(index, length) },
  // each character its own transaction at the end: one Update frame a keystroke
  type_each: ({ doc, field, text }) => {
    const ytext = get(doc).doc.getText(field)
    for (const char of text) ytext.insert(ytext.length, char)
  },
  set: ({ doc, key, value }) => { get(doc).doc.getMap('fields').set(key, value) },
  state: ({ doc: handle, texts = [] }) => {
    const { provider, doc } = get(handle)
    return {
      texts: Object.fromEntries(texts.map((name) => [name, doc.getText(name).toString()])),
      fields: doc.getMap('fields').toJSON(),
      synced: provider.synced,
      unsyncedChanges: provider.unsyncedChanges,
      hasUnsyncedChanges: provider.hasUnsyncedChanges,
      isAuthenticated: provider.isAuthenticated,
      authorizedScope: provider.authorizedScope ?? null,
      clientID: doc.clientID,
      update: toBase64(Y.encodeStateAsUpdate(doc))
    }
  },
  wait_synced: ({ doc, timeout_ms: timeoutMs }) => {
    const { provider } = get(doc)
    return waitFor(provider, () => provider.synced, 'synced', timeoutMs, 'synced')
  },
  // every edit acknowledged (SyncStatus 1): hasUnsyncedChanges false
  wait_saved: ({ doc, timeout_ms: timeoutMs }) => {
    const { provider } = get(doc)
    return waitFor(provider, () => !provider.hasUnsyncedChanges, 'unsyncedChanges', timeoutMs, 'saved')
  },
  awareness_set: ({ doc, field, value }) => { get(doc).provider.setAwarenessField(field, value) },
  awareness_states: ({ doc }) => [...get(doc).provider.awareness.getStates()],
  stateless: ({ doc, payload }) => { get(doc).provider.sendStateless(payload) },
  // the token the provider answers the server's token sync request with (as an app that
  // refreshes its token updates the provider's `token` option)
  set_token: ({ doc, token }) => { get(doc).provider.configuration.token = token },
  // an Auth message with the current token, unasked (the provider's own sendToken)
  send_token: async ({ doc }) => { await get(doc).provider.sendToken() },
  // one frame as given, on the document's socket (bad input tests)
  raw: ({ doc, data }) => {
    const target = socket ?? get(doc).provider.configuration.websocketProvider
    target.send(new Uint8Array(Buffer.from(data, 'base64')))
  },
  // an offline stretch: the document's own socket closes, edits go on locally, and `connect`
  // opens a new socket (auth and sync again); documents over --shared have no socket of their own
  disconnect: ({ doc }) => { ownSocket(doc).disconnect() },
  connect: async ({ doc }) => { await ownSocket(doc).connect() },
  // the provider leaves the shared socket (CLOSE 7) without telling its awareness gone
  detach_doc: ({ doc }) => { get(doc).provider.detach() },
  close_doc: ({ doc }) => {
    get(doc).provider.destroy()
    providers.delete(doc)
  },
  exit: () => {
    for (const { provider } of providers.values()) provider.destroy()
    socket?.destroy()
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
  .on('close', () => ops.exit())

emit({ event: 'ready' })
