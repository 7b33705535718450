// The bench client of `draftsync bench relay` and `bench durability`: many real Yjs editors
// (Y.Doc + y-websocket WebsocketProvider) in one Node process, driven by one JSON config.
//
//   node client.mjs '<config JSON>'
//
// config: {mode: "relay" | "crash" | "read" | "join", protocol?: "y-websocket" (default) | "hocuspocus"
//          (a @hocuspocus/provider HocuspocusProvider per editor, each on its own socket, with
//          url, name, token; relay and read modes), url or urls (several instances of one server: this
//          process's editors are dealt to them round-robin), token?, slots: [room name per editor] or
//          rooms: [name...] + clients (per room), rate (edits/s per client, 0 = flood),
//          edits (per client, flood/crash), seconds (paced: how long each client types),
//          drainSeconds, connectSeconds, warmUpEdits? (relay and crash: see WARM_UP_EDITS)}
// join mode (`bench relay` J1 and C1): {room, fillEdits, fillChunk (characters an edit),
//          fillRate (edits/s, 0 = as fast as acknowledged), joiners, rounds, connectSeconds,
//          keepFiller (J1: the filler stays connected while they join; C1: it leaves and the parent
//          restarts the server before each round)}: see joinMain below.
// stdout: JSON lines, {"event": ...}; the last one is {"event": "result", ...}.
//
// Latency is typed -> visible, measured from Yjs ids, not from timestamps in the document: each
// edit is one transaction on the writer's doc, which creates the item (clientID, clock); the
// writer notes performance.now() under that id. A receiver's doc integrates the item in some
// transaction; its afterTransaction sees every client whose state advanced (beforeState ->
// afterState) and notes the newly integrated clock range with its time. Times are reported on
// performance.timeOrigin + performance.now(), one monotonic clock for all processes on a machine;
// the parent (bench/relay.py) joins sends and receipts by (clientID, clock).
import { createInterface } from 'node:readline'
import WebSocket, { WebSocketServer } from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import { setupWSConnection } from '@y/websocket-server/utils'

const config = JSON.parse(process.argv[2])
const emit = (message) => process.stdout.write(JSON.stringify(message) + '\n')
// stdout to a pipe is asynchronous in Node: exit only once the last line is written
const finish = (message, code = 0) => process.stdout.write(JSON.stringify(message) + '\n', () => process.exit(code))
const now = () => performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const FIELD = 'description' // a text field of draftsync's default schema

const sentAt = new Map() // clientID -> Float64Array of send times by clock
const receipts = [] // [clientID, fromClock, toClock (exclusive), receivedAt] of remote items
let closes = 0
const closeCodes = [] // the close code of every connection the server (or the network) closed

const editors = []
// one room name per editor of this process (relay), or every room x `clients`
const slots = config.slots ?? (config.rooms ?? []).flatMap((room) => Array(config.clients).fill(room))
const urls = config.urls ?? [config.url]
const hocuspocus = config.protocol === 'hocuspocus'
// A HocuspocusProvider connects when built: the editors of that protocol get theirs in main().
const connectHocuspocus = (editor) => {
  editor.provider = new HocuspocusProvider({
    url: editor.url,
    name: editor.room,
    token: config.token ?? 'bench',
    document: editor.doc,
    WebSocketPolyfill: WebSocket
  })
  editor.provider.on('synced', ({ state }) => { if (state) editor.synced = true })
  editor.provider.on('close', ({ event }) => { closes += 1; closeCodes.push(event?.code ?? null) })
}
for (const [i, room] of slots.entries()) {
  const doc = new Y.Doc()
  const provider = hocuspocus
    ? null
    : new WebsocketProvider(urls[i % urls.length], room, doc, {
      params: config.token ? { token: config.token } : {},
      WebSocketPolyfill: WebSocket,
      connect: false,
      disableBc: true
    })
  if (config.mode === 'connections' && provider) provider.awareness.setLocalState(null) // idle: no N^2 presence chatter
  const editor = { doc, provider, room, url: urls[i % urls.length], instance: i % urls.length, text: doc.getText(FIELD), synced: false, sent: 0, cursor: 0 }
  if (!hocuspocus) {
    provider.on('sync', (synced) => { if (synced) editor.synced = true })
    provider.on('connection-close', (event) => { closes += 1; closeCodes.push(event?.code ?? null) })
  }
  doc.on('afterTransaction', (tr) => {
    if (tr.local) return
    const at = now()
    tr.afterState.forEach((after, client) => {
      const before = tr.beforeState.get(client) ?? 0
      if (after > before) receipts.push([client, before, after, at])
    })
  })
  editors.push(editor)
}

let lines = null
const nextLine = async () => {
  lines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  const { value, done } = await lines.next()
  if (done) process.exit(4) // the parent went away
  return value
}

const waitFor = async (predicate, seconds) => {
  const deadline = now() + 1000 * seconds
  while (!predicate()) {
    if (now() > deadline) return false
    await sleep(5)
  }
  return true
}

// Each edit types one character at the editor's cursor, which moves on by one and jumps to a
// random place every RUN characters, as a person types words in one place, then moves. Random
// positions on every keystroke made the client, not the server, the bottleneck of a flood: Yjs
// finds a position by walking from its cached search markers, and a random position of a
// 20,000-character text misses them (findMarker took 29 % of the client's CPU at 16,000
// edits/s, and the client process ran at ~90 %).
const RUN = 64
const typeAtCursor = (typist) => {
  const length = typist.text.length
  if (typist.sent % RUN === 0 || typist.cursor > length) typist.cursor = Math.floor(Math.random() * (length + 1))
  typist.text.insert(typist.cursor, 'x')
  typist.cursor += 1
  typist.sent += 1
}

// op "fields" (scenario S5): each edit sets the `fields` key `category` (draftsync's default
// schema: a string, last writer wins) to a short new value instead of typing a character.
const setField = (editor) => {
  editor.doc.getMap('fields').set('category', `c${editor.sent % 1000}`)
  editor.sent += 1
}
const editOp = config.op === 'fields' ? setField : typeAtCursor

const edit = (editor) => {
  const clock = Y.getState(editor.doc.store, editor.doc.clientID)
  sentAt.get(editor.doc.clientID)[clock] = now()
  editOp(editor)
}

// V8 compiles the hot paths (Yjs, y-websocket, ws) only after they have run a while: until
// then, at 16,000 edits/s, the client itself fell behind for its first ~200 ms (its event loop
// turned 20 times in 100 ms instead of 80) and that showed up as every server's p99. So before
// the clock starts, four editors of this process type WARM_UP_EDITS edits through an in-process
// Yjs reference relay on its own loopback port: the same code paths, none of the traffic on the
// server under test. `warmUpEdits` in the config overrides it: a --quick run of `bench relay` or
// `bench durability` (the smoke tests, whose figures nobody reads) warms up with a few edits.
const WARM_UP_EDITS = config.warmUpEdits ?? 3000
const warmUp = async () => {
  const relay = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  relay.on('connection', (conn, req) => setupWSConnection(conn, req, { docName: 'warm-up' }))
  await new Promise((resolve) => relay.on('listening', resolve))
  const url = `ws://127.0.0.1:${relay.address().port}`
  const peers = Array.from({ length: 4 }, () => {
    const doc = new Y.Doc()
    const provider = new WebsocketProvider(url, 'warm-up', doc, { WebSocketPolyfill: WebSocket, disableBc: true })
    return { doc, provider, text: doc.getText(FIELD), sent: 0, cursor: 0, synced: false }
  })
  for (const peer of peers) peer.provider.on('sync', (synced) => { if (synced) peer.synced = true })
  await waitFor(() => peers.every((p) => p.synced), 10)
  while (peers.some((p) => p.sent < WARM_UP_EDITS)) {
    for (const peer of peers) for (let i = 0; i < 10; i++) typeAtCursor(peer)
    await sleep(1)
  }
  await waitFor(() => peers.every((p) => p.text.length === 4 * WARM_UP_EDITS), 10)
  for (const peer of peers) peer.provider.destroy()
  await new Promise((resolve) => relay.close(resolve))
}

const stateOf = (editor) => Object.fromEntries(Y.decodeStateVector(Y.encodeStateVector(editor.doc)))

// connections mode: `slots` editors of one room connect (at most `inFlight` connecting at a
// time, so the listen backlog is not what is measured), each noting when it started and when it
// was synced; then "synced" with those times, the parent measures the server's memory and says
// "go", the first editor types one character, and "result" tells when each other editor had it.
const connections = async () => {
  const inFlight = config.inFlight ?? 256
  const startedAt = new Float64Array(editors.length)
  const syncedAt = new Float64Array(editors.length)
  const first = now()
  let next = 0
  const deadline = first + 1000 * (config.connectSeconds ?? 60)
  while (editors.some((e) => !e.synced)) {
    if (now() > deadline) {
      return finish({ event: 'error', error: `only ${editors.filter((e) => e.synced).length} of ${editors.length} connections synced` }, 3)
    }
    editors.forEach((e, i) => { if (e.synced && syncedAt[i] === 0) syncedAt[i] = now() })
    let connecting = 0
    for (let i = 0; i < next; i++) if (!editors[i].synced) connecting += 1
    while (next < editors.length && connecting < inFlight) {
      startedAt[next] = now()
      editors[next].provider.connect()
      next += 1
      connecting += 1
    }
    await sleep(1)
  }
  editors.forEach((e, i) => { if (syncedAt[i] === 0) syncedAt[i] = now() })
  const syncMs = Array.from(editors, (e, i) => syncedAt[i] - startedAt[i])
  emit({ event: 'synced', connect_ms: Math.max(...syncedAt) - first, sync_ms: syncMs })
  await nextLine() // "go": the parent has measured the server's memory
  const writer = editors[0]
  const typedAt = now()
  writer.text.insert(0, 'x')
  const others = editors.slice(1)
  await waitFor(() => others.every((e) => e.text.length >= 1), config.drainSeconds ?? 30)
  const fanoutMs = []
  for (const [client, , , at] of receipts) if (client === writer.doc.clientID) fanoutMs.push(at - typedAt)
  const received = others.filter((e) => e.text.length >= 1).length
  const result = { event: 'result', fanout_ms: fanoutMs, received, receivers: others.length, closes, close_codes: closeCodes }
  for (const e of editors) e.provider.destroy()
  finish(result)
}

const main = async () => {
  if (config.mode === 'connections') {
    if (hocuspocus) return finish({ event: 'error', error: 'connections mode speaks y-websocket only' }, 2)
    return connections()
  }
  if (config.mode === 'join') return joinMain()
  if (hocuspocus && config.mode === 'crash') return finish({ event: 'error', error: 'crash mode speaks y-websocket only' }, 2)
  for (const e of editors) hocuspocus ? connectHocuspocus(e) : e.provider.connect()
  const allSynced = await waitFor(() => editors.every((e) => e.synced), config.connectSeconds ?? 30)
  if (!allSynced) {
    return finish({ event: 'error', error: `only ${editors.filter((e) => e.synced).length} of ${editors.length} editors synced` }, 3)
  }
  if (config.mode === 'read') {
    return finish({ event: 'result', state: stateOf(editors[0]), length: editors[0].text.length })
  }
  const capacity = config.rate > 0 ? Math.ceil(config.rate * config.seconds) + 8 : config.edits + 8
  for (const e of editors) sentAt.set(e.doc.clientID, new Float64Array(capacity))
  await warmUp()
  await sleep(200) // let the awareness and sync chatter of the connects settle
  if (config.mode === 'relay') {
    emit({ event: 'ready' })
    await nextLine() // "go": every process is connected
  }
  emit({ event: 'writing' })
  const started = now()
  if (config.mode === 'crash') {
    // The first editor of the room observes; the others flood until the server goes away.
    // On the first close every provider stops (a reconnect would re-upload what the server lost).
    const writers = editors.slice(1)
    let down = false
    for (const e of editors) e.provider.on('connection-close', () => { down = true })
    while (!down && writers.some((w) => w.sent < config.edits)) {
      for (const w of writers) for (let i = 0; i < 10 && w.sent < config.edits; i++) edit(w)
      await new Promise((resolve) => setImmediate(resolve))
    }
    for (const e of editors) e.provider.disconnect()
    const relayed = {}
    for (const e of editors) {
      for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(e.doc))) {
        if (e.doc.clientID !== client) relayed[client] = Math.max(relayed[client] ?? 0, clock)
      }
    }
    const sent = Object.fromEntries(writers.map((w) => [w.doc.clientID, w.sent]))
    return finish({ event: 'result', relayed, sent, down, seconds: (now() - started) / 1000 })
  }
  await relay(started)
}

// relay mode: this process may hold only some of the editors (the parent may start several and
// deal each a share of the room slots, so one room's editors can sit in different processes).
// Protocol with the parent: "ready" -> stdin "go" -> "written" {sent per room} -> stdin
// {"expect": {room: edits}} -> "result" with raw send and receive times on the shared clock
// (performance.timeOrigin + performance.now(), comparable across processes on one machine).
const relay = async (started) => {
  if (config.rate > 0) {
    // Each client types at `rate`: on every tick (about 1 ms) it makes the edits that are due.
    const total = Math.floor(config.rate * config.seconds)
    const offsets = editors.map(() => Math.random() * 1000 / config.rate)
    while (editors.some((e) => e.sent < total)) {
      const t = now() - started
      editors.forEach((e, i) => {
        const due = Math.min(total, Math.floor((t - offsets[i]) * config.rate / 1000) + 1)
        while (e.sent < due) edit(e)
      })
      await sleep(1)
    }
  } else {
    // Flood: every client makes `edits` edits as fast as it can, yielding to I/O every 10.
    while (editors.some((e) => e.sent < config.edits)) {
      for (const e of editors) for (let i = 0; i < 10 && e.sent < config.edits; i++) edit(e)
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const writeSeconds = (now() - started) / 1000
  const sentByRoom = {}
  for (const e of editors) sentByRoom[e.room] = (sentByRoom[e.room] ?? 0) + e.sent
  emit({ event: 'written', sent: sentByRoom, write_seconds: writeSeconds })
  const { expect } = JSON.parse(await nextLine())
  // every editor has integrated all edits of its room but its own
  const remote = (e) => {
    let n = 0
    Y.decodeStateVector(Y.encodeStateVector(e.doc)).forEach((clock, client) => { if (client !== e.doc.clientID) n += clock })
    return n
  }
  await waitFor(() => editors.every((e) => remote(e) >= expect[e.room] - e.sent), config.drainSeconds ?? 30)
  const origin = performance.timeOrigin
  const sends = {}
  for (const e of editors) {
    sends[e.doc.clientID] = Array.from(sentAt.get(e.doc.clientID).subarray(0, e.sent), (t) => +(origin + t).toFixed(3))
  }
  const received = receipts.map(([client, from, to, t]) => [client, from, to, +(origin + t).toFixed(3)])
  const editorsOut = editors.map((e) => ({ room: e.room, instance: e.instance, client: e.doc.clientID, sent: e.sent, remote: remote(e), length: config.op === 'fields' ? JSON.stringify(e.doc.getMap('fields').toJSON()) : e.text.length }))
  const result = { event: 'result', sends, received, editors: editorsOut, closes, close_codes: closeCodes, write_seconds: writeSeconds }
  for (const e of editors) e.provider.destroy()
  finish(result)
}

// join mode: one filler types the draft (fillEdits edits of fillChunk characters at its end)
// while an observer on a second socket waits until it holds all of it (for a durable server:
// committed), then "filled". Each round the parent says "go" (for C1 after restarting the
// server on its data) and `joiners` fresh editors connect in the same tick; each one's time
// from connect() to synced (its sync step 2 integrated) is reported with the length it got.
const newEditor = (room, url) => {
  const doc = new Y.Doc()
  const editor = { doc, room, url, text: doc.getText(FIELD), synced: false, sent: 0, cursor: 0, provider: null }
  if (hocuspocus) {
    editor.provider = new HocuspocusProvider({ url, name: room, token: config.token ?? 'bench', document: doc, WebSocketPolyfill: WebSocket })
    editor.provider.on('synced', ({ state }) => { if (state && !editor.synced) { editor.synced = true; editor.syncedAt = now() } })
  } else {
    editor.provider = new WebsocketProvider(url, room, doc, { params: config.token ? { token: config.token } : {}, WebSocketPolyfill: WebSocket, connect: false, disableBc: true })
    editor.provider.on('sync', (synced) => { if (synced && !editor.synced) { editor.synced = true; editor.syncedAt = now() } })
  }
  editor.provider.on(hocuspocus ? 'close' : 'connection-close', () => { closes += 1 })
  return editor
}
const connectEditor = (editor) => { editor.startedAt = now(); if (!hocuspocus) editor.provider.connect() }

const joinMain = async () => {
  const url = urls[0]
  const filler = newEditor(config.room, url)
  const observer = newEditor(config.room, url)
  connectEditor(filler); connectEditor(observer)
  if (!await waitFor(() => filler.synced && observer.synced, config.connectSeconds ?? 30)) {
    return finish({ event: 'error', error: 'the filler did not sync' }, 3)
  }
  const chunk = 'x'.repeat(config.fillChunk ?? 1)
  const fillStarted = now()
  const period = config.fillRate > 0 ? 1000 / config.fillRate : 0
  while (filler.sent < config.fillEdits) {
    if (period) {
      const due = Math.min(config.fillEdits, Math.floor((now() - fillStarted) / period) + 1)
      while (filler.sent < due) { filler.text.insert(filler.text.length, chunk); filler.sent += 1 }
      await sleep(1)
    } else {
      for (let i = 0; i < 10 && filler.sent < config.fillEdits; i++) { filler.text.insert(filler.text.length, chunk); filler.sent += 1 }
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const length = filler.text.length
  if (!await waitFor(() => observer.text.length === length, 300)) {
    return finish({ event: 'error', error: `the observer got ${observer.text.length} of ${length} characters` }, 3)
  }
  if (!config.keepFiller) { filler.provider.destroy(); observer.provider.destroy() }
  emit({ event: 'filled', length, fill_seconds: (now() - fillStarted) / 1000, update_bytes: Y.encodeStateAsUpdate(filler.doc).length })
  const rounds = []
  for (let round = 0; round < (config.rounds ?? 1); round++) {
    await nextLine() // "go"
    const joiners = Array.from({ length: config.joiners }, () => newEditor(config.room, url))
    for (const j of joiners) connectEditor(j) // one tick: they all arrive at once
    await waitFor(() => joiners.every((j) => j.synced && j.text.length === length), config.connectSeconds ?? 60)
    rounds.push(joiners.map((j) => ({ ms: j.synced ? j.syncedAt - j.startedAt : null, length: j.text.length })))
    for (const j of joiners) j.provider.destroy()
    emit({ event: 'joined', round })
  }
  if (config.keepFiller) { filler.provider.destroy(); observer.provider.destroy() }
  finish({ event: 'result', length, rounds, closes })
}

main().catch((error) => {
  finish({ event: 'error', error: String(error?.stack ?? error) }, 1)
})
