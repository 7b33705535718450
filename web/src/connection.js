// The draft's WebSocket connection (y-websocket) and what the status indicator shows.
//
// "synced" means the server has committed every local change: after local updates the page
// sends draftsync's write acknowledgement (message 102, payload = a local sequence number) and
// the server echoes it once everything this connection sent before it is stored and relayed
// (design.md, "Write acknowledgement"). The same echo, every HEARTBEAT_MS, keeps y-websocket's
// 30 s no-message watchdog from dropping a lone editor's idle connection.
//
// Status, most important first: error (the server refused us: 4400/4401/4403/4404), offline,
// syncing (local changes not acknowledged yet, or the first sync running), conflict (open
// conflicts in the `conflicts` map), synced.
import { WebsocketProvider, messageAuth, messageSync } from 'y-websocket'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { ROOT } from './root.js'

export const MESSAGE_WRITE_ACK = 102
const HEARTBEAT_MS = 10000

const CLOSE_REASONS = {
  4400: 'The server refused a malformed message.',
  4401: 'Your sign-in token is missing, invalid or expired.',
  4403: 'You have no access to this draft.',
  4404: 'This draft does not exist (or was deleted).'
}

export function connect ({ doc, draftId, token }) {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  const provider = new WebsocketProvider(`${scheme}://${window.location.host}${ROOT}/ws`, draftId, doc, {
    params: { token },
    connect: false,
    disableBc: true // another tab's copy is not the server's: only the server's echo counts
  })
  const state = {
    everConnected: false,
    handshaken: false, // our answer to the server's sync step 1 went out on this socket
    local: 0, // local updates so far
    sent: 0, // the highest `local` put on the current socket
    acked: 0, // the highest `local` the server acknowledged
    error: null,
    readOnly: false
  }
  const listeners = new Set()
  const notify = () => { for (const listener of listeners) listener() }

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

  const syncHandler = provider.messageHandlers[messageSync]
  provider.messageHandlers[messageSync] = (encoder, decoder, ...rest) => {
    syncHandler(encoder, decoder, ...rest)
    if (encoding.length(encoder) > 1) {
      // we answer the server's step 1 with our step 2: everything it lacks, offline edits too
      state.handshaken = true
      state.sent = state.local
      scheduleAck()
    }
    notify()
  }
  provider.messageHandlers[MESSAGE_WRITE_ACK] = (_encoder, decoder) => {
    const payload = decoding.readVarUint8Array(decoder)
    const seq = decoding.readVarUint(decoding.createDecoder(payload))
    if (seq > state.acked) {
      state.acked = seq
      notify()
    }
  }
  provider.messageHandlers[messageAuth] = (_encoder, decoder) => {
    // y-protocols auth: 0 = permission denied, then the reason ("read-only" for viewers)
    if (decoding.readVarUint(decoder) === 0) {
      state.readOnly = true
      state.readOnlyReason = decoding.readVarString(decoder)
      notify()
    }
  }

  doc.on('update', (_update, origin) => {
    if (origin === provider) return
    state.local += 1
    if (provider.wsconnected && state.handshaken) state.sent = state.local // y-websocket sent it
    scheduleAck()
    notify()
  })
  provider.on('status', ({ status }) => {
    if (status === 'connected') {
      state.everConnected = true
      state.handshaken = false
      state.sent = state.acked // what the last socket sent but never acknowledged is resent
    }
    notify()
  })
  provider.on('sync', notify)
  provider.on('closed', ({ code, reason }) => {
    state.error = { code, message: CLOSE_REASONS[code] || `The server closed the connection (${code}).`, reason }
    notify()
  })
  const heartbeat = setInterval(sendAck, HEARTBEAT_MS)
  window.addEventListener('online', notify)
  window.addEventListener('offline', notify)

  const status = (openConflicts = 0) => {
    if (state.error) return { name: 'error', label: 'Error', detail: state.error.message }
    if (!provider.wsconnected) {
      return state.everConnected
        ? { name: 'offline', label: 'Offline', detail: 'Changes are kept here and sent when the connection is back.' }
        : { name: 'syncing', label: 'Connecting…', detail: 'Connecting to the server.' }
    }
    if (!provider.synced || !state.handshaken || state.acked < state.local) {
      return { name: 'syncing', label: 'Syncing…', detail: 'Sending changes to the server.' }
    }
    if (openConflicts > 0) {
      const s = openConflicts === 1 ? '' : 's'
      return { name: 'conflict', label: 'Conflict', detail: `${openConflicts} open conflict${s} to resolve.` }
    }
    return { name: 'synced', label: 'Synced', detail: 'All changes are saved on the server.' }
  }

  return {
    provider,
    awareness: provider.awareness,
    state,
    status,
    onChange: (listener) => listeners.add(listener),
    start: () => provider.connect(),
    destroy: () => { clearInterval(heartbeat); provider.destroy() }
  }
}
