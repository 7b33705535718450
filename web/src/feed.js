// The drafts change feed, GET /api/drafts/feed (server-sent events): summaries of drafts the
// user can see, as they change. Read with a fetch stream, not EventSource, so that the token
// goes in the Authorization header and never in a URL. After a drop it reconnects with a
// growing pause (1 s … 30 s) and asks for a resync: events sent meanwhile are lost.
// A 401 stops it (the page says why); so does stop().
import { ROOT } from './root.js'

const MAX_PAUSE_MS = 30_000

/** Parse one SSE block ("event: x\ndata: {...}") into {kind, data}; null for comments. */
function parseBlock (block) {
  let kind = 'message'
  const data = []
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue
    if (line.startsWith('event:')) kind = line.slice(6).trim()
    else if (line.startsWith('data:')) data.push(line.slice(5).trim())
  }
  if (!data.length) return null
  try {
    return { kind, data: JSON.parse(data.join('\n')) }
  } catch {
    return null
  }
}

/**
 * watchFeed({getToken, onEvent, onState}): onEvent({kind, data}) for ready, summary, removed,
 * resync; onState('live' | 'reconnecting' | 'stopped', why). Returns {stop()}.
 */
export function watchFeed ({ getToken, onEvent, onState }) {
  let stopped = false
  let controller = null
  let pause = 1000
  let everConnected = false

  const run = async () => {
    while (!stopped) {
      controller = new AbortController()
      let response
      try {
        response = await fetch(`${ROOT}/api/drafts/feed`, {
          headers: { Accept: 'text/event-stream', Authorization: `Bearer ${getToken()}` },
          signal: controller.signal,
          cache: 'no-store'
        })
      } catch {
        response = null
      }
      if (stopped) return
      if (response && response.status === 401) {
        onState('stopped', 'Live updates stopped: your sign-in token is missing or expired.')
        return
      }
      if (response && response.ok && response.body) {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
        let buffer = ''
        try {
          for (;;) {
            const { value, done } = await reader.read()
            if (done) break
            buffer += value.replace(/\r\n?/g, '\n')
            let end
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const event = parseBlock(buffer.slice(0, end))
              buffer = buffer.slice(end + 2)
              if (!event) continue
              if (event.kind === 'ready') {
                pause = 1000
                onState('live')
                // what changed while no stream was open is unknown: read the list again
                if (everConnected) onEvent({ kind: 'resync', data: {} })
                everConnected = true
              } else {
                onEvent(event)
              }
            }
          }
        } catch {
          // the stream broke (network, server restart): reconnect below
        }
      }
      if (stopped) return
      onState('reconnecting')
      await new Promise((resolve) => setTimeout(resolve, pause))
      pause = Math.min(MAX_PAUSE_MS, pause * 2)
    }
  }
  run()
  return {
    stop: () => {
      stopped = true
      if (controller) controller.abort()
    }
  }
}
