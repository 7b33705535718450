// The REST API (design.md, "REST"), JSON with `Authorization: Bearer TOKEN`.
// Every call resolves to {ok, status, body}: a missing endpoint (404/405) is an answer the
// page renders, not an exception, since parts of the API may not exist on every server.

import { ROOT } from './root.js'

/** Calls with paths of the API (`/api/…`), sent under the server's root. */
export function api (token) {
  const call = async (method, path, body) => {
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
      return { ok: false, status: 0, body: { detail: `network error: ${error.message}` } }
    }
    let parsed = null
    const text = await response.text()
    try {
      parsed = text ? JSON.parse(text) : null
    } catch {
      parsed = { detail: text.slice(0, 200) }
    }
    return { ok: response.ok, status: response.status, body: parsed }
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body ?? {}),
    put: (path, body) => call('PUT', path, body ?? {})
  }
}

/** A one-line explanation of a failed call, for the person reading the page. */
export function explain (answer, what) {
  if (answer.status === 0) return `${what}: the server cannot be reached.`
  if (answer.status === 401) return `${what}: your sign-in token is missing or expired.`
  if (answer.status === 404 || answer.status === 405) return `${what} is not available here.`
  const detail = answer.body && (answer.body.detail || answer.body.error)
  return `${what} failed (${answer.status}${detail ? `: ${detail}` : ''}).`
}
