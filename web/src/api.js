// The REST API (design.md, "REST"), JSON with `Authorization: Bearer TOKEN`.
// Every call resolves to {ok, status, body}: a missing endpoint (404/405) is an answer the
// page renders, not an exception, since parts of the API may not exist on every server.
//
// "Try again later" (429 or 503 with a Retry-After of whole seconds: a user's request rate,
// the server's requests or history rebuilds under way) is waited out for a GET, which changes
// nothing: asked again after that wait (each at most MAX_WAIT_SECONDS, at most MAX_RETRIES
// times), so that the history panel's diff and version, asked at once, both arrive. Other
// methods are answered as they are: a write repeated on its own could be applied twice.

import { ROOT } from './root.js'

export const MAX_RETRIES = 3
export const MAX_WAIT_SECONDS = 10

/** Calls with paths of the API (`/api/…`), sent under the server's root. */
export function api (token) {
  const once = async (method, path, body) => {
    const headers = { Accept: 'application/json' }
    if (token) headers.Authorization = `Bearer ${token}`
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    let response
    try {
      response = await fetch(ROOT + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body)
      })
    } catch (error) {
      return [{ ok: false, status: 0, body: { detail: `network error: ${error.message}` } }, null]
    }
    let parsed = null
    const text = await response.text()
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      parsed = { detail: text.slice(0, 200) }
    }
    return [{ ok: response.ok, status: response.status, body: parsed }, retryAfter(response)]
  }
  const call = async (method, path, body) => {
    let [answer, wait] = await once(method, path, body)
    for (let retry = 0; method === 'GET' && wait !== null && retry < MAX_RETRIES; retry++) {
      await new Promise((resolve) => setTimeout(resolve, wait * 1000))
      ;[answer, wait] = await once(method, path, body)
    }
    return answer
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body ?? {}),
    put: (path, body) => call('PUT', path, body ?? {})
  }
}

/** The seconds a 429 or 503 asks to wait (capped), or null: not an answer to wait out. The
 * HTTP-date form of Retry-After is not used by draftsync and is not waited for. */
function retryAfter (response) {
  if (response.status !== 429 && response.status !== 503) return null
  const value = (response.headers.get('Retry-After') || '').trim()
  if (!/^\d+$/.test(value)) return null
  return Math.min(Number(value), MAX_WAIT_SECONDS)
}

/** A one-line explanation of a failed call, for the person reading the page. */
export function explain (answer, what) {
  if (answer.status === 0) return `${what}: the server cannot be reached.`
  if (answer.status === 401) return `${what}: your sign-in token is missing or expired.`
  if (answer.status === 404 || answer.status === 405) return `${what} is not available here.`
  const detail = answer.body && (answer.body.detail || answer.body.error)
  return `${what} failed (${answer.status}${detail ? `: ${detail}` : ''}).`
}
