// The draft's WebSocket connection (y-websocket) and what the status indicator shows.
//
// "synced" means the server has committed every local change: after local updates the page
// sends draftsync's write acknowledgement (message 102, payload = a local sequence number) and
// the server echoes it once everything this connection sent before it is stored and relayed
// (design.md, "Write acknowledgement"). The same echo, every HEARTBEAT_MS, keeps y-websocket's
// 30 s no-message watchdog from dropping a lone editor's idle connection.
//
// Status, most important first: error (the server refused us: 1009, 4400/4401/4403/4404; the
// page does not reconnect by itself, local work stays in this browser), retrying (the server
// closed with a server error, 1011: reconnecting and resending until it takes our changes),
// offline (the browser says so, or the socket is closed: said at once, the page does not wait
// for a timeout),
// syncing (local changes not acknowledged yet, or the first sync running), conflict (open
// conflicts in the `conflicts` map), synced. Offline and syncing say "saved in this browser"
// only when IndexedDB holds every change (`local.allSaved()`, local.js), and "not saved in this
// browser" with the reason when a write to it failed (`local.failure()`: its quota is full…).
import { WebsocketProvider, messageAuth, messageSync } from 'y-websocket'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { ROOT } from './root.js'
import { sizeText } from './limits.js'
import * as Y from 'yjs'

export const MESSAGE_WRITE_ACK = 102
const HEARTBEAT_MS = 10000
const EMPTY_UPDATE = new Uint8Array([0, 0]) // no structs, no deletions

// Closes after which reconnecting would only be refused again: the page stops and says why.
// (4408 "too slow" and 1011/1013/1001 reconnect: y-websocket's default would stop on 4408.)
const CLOSE_REASONS = {
  1009: 'Change too large: the server refused a change bigger than it accepts.',
  4400: 'The server refused a malformed message.',
  4401: 'Your sign-in token is missing, invalid or expired.',
  4403: 'You have no access to this draft.',
  4404: 'This draft does not exist (or was deleted).'
}

const REFUSALS_IN_A_ROW = 3
// "Not now": the server is shutting down (1001) or cannot store anything for a while (1013: its
// disk is full, its store failed). Not a refusal of our changes: retried until they get through.
const LATER_CODES = new Set([1001, 1013])
// A server error (1011: it failed on something unexpected; design.md, "reconnect and resend"):
// not a refusal of our changes either, whatever it was doing with them. Retried with the same
// capped backoff until they get through; the status says the server had an error meanwhile.
const SERVER_ERROR_CODES = new Set([1011])
// What sends the work kept here after an error that lets it through (status detail)
const SENT_AFTER = {
  1009: ': remove the large text, then press Retry to send them',
  4401: ' and sent once you paste a new link or token'
}
const ERROR_LABELS = { 1009: 'Change too large', 4401: 'Sign-in expired', 4403: 'No access', 4404: 'Not found' }

export function connect ({ doc, draftId, token, local, maxMessageBytes = Infinity }) {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  let socketToken = token // the token of the socket being opened or open
  const provider = new WebsocketProvider(`${scheme}://${window.location.host}${ROOT}/ws`, draftId, doc, {
    params: { token },
    connect: false,
    disableBc: true, // another tab's copy is not the server's: only the server's echo counts
    // a 4401 for a token we have replaced meanwhile (renewed) is not the end: reconnect
    shouldReconnect: (event) => !(event.code in CLOSE_REASONS) ||
      (event.code === 4401 && provider.params.token !== socketToken)
  })
  const state = {
    everConnected: false,
    failed: false, // a connection attempt failed or a socket closed since the last sync
    handshaken: false, // our answer to the server's sync step 1 went out on this socket
    local: local && local.loaded ? 1 : 0, // local updates so far (the stored copy counts as one)
    sent: 0, // the highest `local` put on the current socket
    acked: 0, // the highest `local` the server acknowledged
    error: null,
    readOnly: false,
    switching: false, // reconnecting on purpose (a new token): not "offline"
    refused: false, // read-only on a socket whose server lacked our changes: it dropped them
    refusals: 0, // sockets in a row closed by the server before acknowledging what we sent
    later: 0, // sockets in a row closed with "try again later" (LATER_CODES)
    serverErrors: 0 // sockets in a row closed with a server error (SERVER_ERROR_CODES)
  }
  let stopped = false
  const listeners = new Set()
  const notify = () => { for (const listener of listeners) listener() }
  const online = () => navigator.onLine !== false

  let ackTimer = null
  const sendAck = () => {
    ackTimer = null
    const ws = provider.ws
    if (!provider.wsconnected || !ws || ws.readyState !== ws.OPEN || !state.handshaken) return
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_WRITE_ACK)
    encoding.writeVarUint8Array(encoder, encoding.encode((e) => encoding.writeVarUint(e, state.sent)))
    ws.send(encoding.toUint8Array(encoder))
  }
  // after the current task, so that the update (or our sync step 2) is on the wire first
  const scheduleAck = () => { if (ackTimer === null) ackTimer = setTimeout(sendAck, 0) }

  // Local updates not yet acknowledged, in order (the stored copy first): what the server may
  // lack. Sent one by one when, all together, they exceed the server's message limit.
  // The stored copy is its updates as stored (changes typed offline before a reload, each of
  // which fitted), or the whole doc when they cannot be read.
  const stored = local && local.loaded ? (local.storedUpdates && local.storedUpdates()) || [Y.encodeStateAsUpdate(doc)] : []
  let unacked = stored.map((update) => ({ seq: 1, update }))

  const syncHandler = provider.messageHandlers[messageSync]
  // Whether the server lacked changes of ours when it asked (its sync step 1) and has not
  // acknowledged them since: a read-only notice meanwhile means it dropped them.
  let lacking = false
  let handshakeSeq = 0
  // Read-only is per socket: the server tells a viewer's socket when its sync step 2 arrives,
  // before acknowledging it. An acknowledgement on a socket told nothing: we may write again
  // (made an editor while we were away).
  let toldReadOnly = false
  provider.messageHandlers[messageSync] = (encoder, decoder, ...rest) => {
    const peek = decoding.clone(decoder)
    let theirVector = null
    if (decoding.readVarUint(peek) === 0) { // sync step 1: the server's state vector
      theirVector = decoding.readVarUint8Array(peek)
      const theirs = Y.decodeStateVector(theirVector)
      const ours = Y.decodeStateVector(Y.encodeStateVector(doc))
      lacking = [...ours].some(([client, clock]) => clock > (theirs.get(client) || 0))
    }
    syncHandler(encoder, decoder, ...rest)
    const size = encoding.length(encoder)
    if (size > maxMessageBytes) {
      // What the server lacks (changes made offline) is more than it takes in one message: it
      // would close with 1009, and every reconnect would send it again. Answer with an empty
      // step 2 and send the unacknowledged updates in several messages, merged as far as they
      // fit (each was checked against the limit when it was made: limits.js); if one alone
      // does not fit (stored updates y-indexeddb merged: more than a message even without
      // what the server has), send nothing and say so.
      encoder.bufs.length = 0
      encoder.cpos = 0
      const ws = provider.ws
      // only what the server lacks of each (a stored copy merged into one update holds much
      // that the server has); an empty update is 2 bytes
      const lacks = theirVector === null
        ? unacked.map(({ update }) => update)
        : unacked.map(({ update }) => Y.diffUpdate(update, theirVector)).filter((update) => update.length > 2)
      if (lacks.every((update) => update.length + 16 <= maxMessageBytes)) {
        encoding.writeVarUint(encoder, messageSync)
        encoding.writeVarUint(encoder, 1) // sync step 2
        encoding.writeVarUint8Array(encoder, EMPTY_UPDATE)
        ws.send(encoding.toUint8Array(encoder))
        encoder.bufs.length = 0
        encoder.cpos = 0
        for (const update of batches(lacks, maxMessageBytes - 64)) {
          const message = encoding.createEncoder()
          encoding.writeVarUint(message, messageSync)
          encoding.writeVarUint(message, 2) // update
          encoding.writeVarUint8Array(message, update)
          ws.send(encoding.toUint8Array(message))
        }
      } else {
        state.error = {
          code: 1009,
          message: `Change too large: the changes not yet on the server add up to ${sizeText(size)}, more than the server takes at once. Nothing was sent.`,
          reason: ''
        }
        provider.disconnect()
        notify()
        return
      }
    }
    if (size > 1) {
      // we answer the server's step 1 with our step 2: everything it lacks, offline edits too
      state.handshaken = true
      state.sent = state.local
      handshakeSeq = state.local
      scheduleAck()
    }
    notify()
  }
  provider.messageHandlers[MESSAGE_WRITE_ACK] = (_encoder, decoder) => {
    const payload = decoding.readVarUint8Array(decoder)
    const seq = decoding.readVarUint(decoding.createDecoder(payload))
    if (state.readOnly && !toldReadOnly && state.handshaken && seq >= handshakeSeq) {
      state.readOnly = false
      notify()
    }
    if (seq >= handshakeSeq) {
      lacking = false
      // the server took what this socket sent it: its error (if any) is over
      if (state.handshaken && state.serverErrors > 0) {
        state.serverErrors = 0
        notify()
      }
    }
    if (seq > state.acked) {
      state.acked = seq
      state.refusals = 0
      state.later = 0
      unacked = unacked.filter((entry) => entry.seq > seq)
      notify()
    }
  }
  provider.messageHandlers[messageAuth] = (_encoder, decoder) => {
    // y-protocols auth: 0 = permission denied, then the reason ("read-only" for viewers)
    if (decoding.readVarUint(decoder) === 0) {
      state.readOnly = true
      toldReadOnly = true
      state.readOnlyReason = decoding.readVarString(decoder)
      // what we sent the server lacked: dropped, whatever its acknowledgement says
      if (lacking && state.handshaken) state.refused = true
      notify()
    }
  }

  doc.on('update', (update, origin) => {
    if (origin === provider) return
    state.local += 1
    unacked.push({ seq: state.local, update })
    if (provider.wsconnected && state.handshaken) state.sent = state.local // y-websocket sent it
    scheduleAck()
    notify()
  })
  provider.on('status', ({ status }) => {
    if (status === 'connecting') {
      socketToken = provider.params.token
      state.handshaken = false // per socket: refusals count only sockets we sent on
      // another tab of this draft, closed offline, left its changes in IndexedDB: send them too
      if (local && local.available) local.catchUp()
    }
    if (status === 'connected') {
      state.everConnected = true
      state.failed = false
      state.switching = false
      state.handshaken = false
      state.sent = state.acked // what the last socket sent but never acknowledged is resent
      state.refused = false // judged again on this socket
      lacking = false
      toldReadOnly = false
    }
    notify()
  })
  // A server that takes the socket and then drops it each time our changes arrive is refusing
  // them (a 1009 the browser reports as 1006, a server that does not announce its limit, a
  // change it fails on without saying it was a server error): after REFUSALS_IN_A_ROW such
  // closes the page stops retrying and says so, instead of resending for ever. An outage (no
  // socket opens) is retried as before; so is a server error (1011), said as one.
  // A 1006 (no close frame) from a server that announced its limit is a dropped network (a
  // train, a lift), not a refusal: every message the page sends fits that limit. Retried as
  // offline, however often; only a server that does not say its limit gets the three tries.
  const droppedNetwork = (event) => event.code === 1006 && Number.isFinite(maxMessageBytes)
  provider.on('connection-close', (event) => {
    state.failed = true
    state.switching = false
    if (event && LATER_CODES.has(event.code)) {
      // retried with y-websocket's backoff, which restarts once a socket synced: kept growing
      state.later += 1
      provider.wsUnsuccessfulReconnects = Math.max(provider.wsUnsuccessfulReconnects, state.later)
    } else if (event && SERVER_ERROR_CODES.has(event.code)) {
      // the same backoff (capped at maxBackoffTime), never counted as a refusal
      state.serverErrors += 1
      provider.wsUnsuccessfulReconnects = Math.max(provider.wsUnsuccessfulReconnects, state.serverErrors)
    } else if (event && state.handshaken && state.acked < state.sent && !(event.code in CLOSE_REASONS) && !droppedNetwork(event)) {
      state.refusals += 1
      if (state.refusals >= REFUSALS_IN_A_ROW && !state.error) {
        state.error = {
          code: 1009,
          message: `Change too large, or refused: the server closed the connection ${REFUSALS_IN_A_ROW} times in a row while receiving your changes (last code ${event.code}).`,
          reason: ''
        }
        provider.shouldConnect = false // the reconnect y-websocket scheduled does nothing
      }
    }
    notify()
  })
  provider.on('sync', notify)
  provider.on('closed', ({ code, reason }) => {
    state.error = { code, message: CLOSE_REASONS[code] || `The server closed the connection (${code}).`, reason }
    notify()
  })
  if (local) local.onSaved(notify)
  const heartbeat = setInterval(sendAck, HEARTBEAT_MS)
  // The browser knows first: close the socket at once rather than wait ~30 s for the
  // watchdog, and open a new one as soon as the browser is back online.
  const wentOffline = () => { provider.disconnect(); notify() }
  const cameOnline = () => { if (!state.error && !stopped) provider.connect(); notify() }
  window.addEventListener('offline', wentOffline)
  window.addEventListener('online', cameOnline)

  const unsent = () => state.acked < state.local
  const savedHere = () => Boolean(local && local.available && local.allSaved())
  // why this browser could not keep the changes (a write to IndexedDB failed), if it could not
  const localFailure = () => {
    const failure = local && local.available && local.failure ? local.failure() : null
    if (!failure) return null
    return failure.full ? 'storage full' : 'storage error'
  }
  // `when`: when the changes saved here go out (it depends on the state being told)
  const keptNote = (when = 'sent when the connection is back') => {
    if (!unsent()) return ''
    if (savedHere()) return `Your changes are saved in this browser and ${when}.`
    const failure = localFailure()
    if (failure) return `This browser could not save your changes (${failure}): keep this page open until they are sent, or free some space.`
    if (local && local.available) return 'Saving your changes in this browser…'
    return 'Your changes are not saved anywhere yet: keep this page open until they are sent.'
  }
  const saved = () => savedHere() ? 'browser' : unsent() && localFailure() ? 'failed' : 'no'

  const status = (openConflicts = 0) => {
    const failure = localFailure()
    const suffix = !unsent() ? ''
      : savedHere() ? ' · saved in this browser'
        : failure ? ` · not saved in this browser: ${failure}` : ''
    if (state.error) {
      // only a new token (4401) or a smaller change (1009) lets the work through: otherwise it
      // is kept, not promised to be sent; the page does not reconnect by itself after any
      // error, so "when the connection is back" is never said here
      const kept = unsent() && savedHere()
        ? `Your changes are kept in this browser${SENT_AFTER[state.error.code] || ''}.`
        : keptNote()
      const detail = [state.error.message, kept].filter(Boolean).join(' ')
      return { name: 'error', label: ERROR_LABELS[state.error.code] || 'Error', detail, saved: saved() }
    }
    if (state.refused) {
      const kept = savedHere() ? ' They are kept in this browser.' : ''
      return { name: 'error', label: 'Not sent', detail: `You can only read this draft now: your changes made here were not taken by the server.${kept}`, saved: saved() }
    }
    if (state.serverErrors > 0 && online()) {
      // until the server takes this socket's changes: connecting, syncing or closed again
      const detail = unsent()
        ? `The server had an error; the page reconnects by itself. ${keptNote('sent again on each try')}`
        : 'The server had an error; the page reconnects by itself. Everything is saved on the server.'
      return { name: 'retrying', label: `Server error, retrying…${suffix}`, detail, saved: saved() }
    }
    if (!online() || (!provider.wsconnected && !state.switching && (state.everConnected || state.failed))) {
      const detail = unsent() ? keptNote() : 'Everything is saved on the server. Changes you make now are kept in this browser and sent when the connection is back.'
      return { name: 'offline', label: `Offline${suffix}`, detail, saved: saved() }
    }
    if (!provider.wsconnected) {
      return { name: 'syncing', label: `Connecting…${suffix}`, detail: 'Connecting to the server.', saved: saved() }
    }
    if (!provider.synced || !state.handshaken || unsent()) {
      return { name: 'syncing', label: `Syncing…${suffix}`, detail: 'Sending changes to the server.', saved: saved() }
    }
    if (openConflicts > 0) {
      const s = openConflicts === 1 ? '' : 's'
      return { name: 'conflict', label: 'Conflict', detail: `${openConflicts} open conflict${s} to resolve.`, saved: saved() }
    }
    return { name: 'synced', label: 'Synced', detail: 'All changes are saved on the server.', saved: saved() }
  }

  /** Connect again, with `token` if given (a renewed or pasted one), after an error too. */
  const reconnect = (newToken) => {
    if (newToken) provider.params = { ...provider.params, token: newToken }
    state.error = null
    state.refusals = 0
    if (provider.ws) provider.disconnect()
    if (online() && !stopped) {
      state.switching = true
      provider.connect()
    }
    notify()
  }

  return {
    provider,
    awareness: provider.awareness,
    state,
    status,
    /** Changes made here that neither the server nor IndexedDB holds yet. */
    atRisk: () => unsent() && !savedHere(),
    onChange: (listener) => listeners.add(listener),
    start: () => { if (online()) provider.connect(); notify() },
    reconnect,
    stop: () => { stopped = true; provider.disconnect(); notify() },
    destroy: () => {
      stopped = true
      clearInterval(heartbeat)
      window.removeEventListener('offline', wentOffline)
      window.removeEventListener('online', cameOnline)
      provider.destroy()
    }
  }
}

/** Consecutive updates merged into as few as fit `limit` bytes each (Y.mergeUpdates). */
function batches (updates, limit) {
  const out = []
  let batch = []
  let size = 0
  for (const update of updates) {
    if (batch.length && size + update.length > limit) {
      out.push(batch.length === 1 ? batch[0] : Y.mergeUpdates(batch))
      batch = []
      size = 0
    }
    batch.push(update)
    size += update.length
  }
  if (batch.length) out.push(batch.length === 1 ? batch[0] : Y.mergeUpdates(batch))
  return out
}
