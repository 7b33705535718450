// The caller's token: taken from `?token=` (what `draftsync serve` prints), kept in this
// origin's localStorage, and removed from the address bar so that it is not in the history or
// a copied link. Kept per origin, not per tab, as people expect of a signed-in web app: a link
// copied from the address bar (/d/ID) opens in another tab of the same browser, and a renewed
// token reaches every open tab (`onTokenChange`). "Sign out" forgets it (and the local copies:
// local.js). Links to other pages of the editor carry no token.
import { ROOT } from './root.js'

const KEY = 'draftsync.token'

/** `path` of the editor (`/`, `/d/…`) under the server's root (root.js); links carry no token. */
export function pagePath (path) {
  return ROOT + path
}

export function takeToken () {
  const url = new URL(window.location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl) {
    storeToken(fromUrl)
    url.searchParams.delete('token')
    window.history.replaceState(null, '', url.pathname + url.search + url.hash)
  }
  try {
    return window.localStorage.getItem(KEY)
  } catch {
    return fromUrl // storage blocked: this page only
  }
}

/** The token kept in this browser (another tab may have changed it since this page loaded). */
export function storedToken () {
  try {
    return window.localStorage.getItem(KEY)
  } catch {
    return null
  }
}

export function storeToken (token) {
  try {
    window.localStorage.setItem(KEY, token)
  } catch {
    // storage blocked: the token lives in the page only
  }
}

export function forgetToken () {
  try {
    window.localStorage.removeItem(KEY)
  } catch {}
}

/** Call `listener(token | null)` when another tab stores a new token or signs out. */
export function onTokenChange (listener) {
  window.addEventListener('storage', (event) => {
    if (event.key === KEY || event.key === null) listener(event.newValue)
  })
}

/** A token typed or pasted by the user: a whole link with `?token=`, or the token itself. */
export function tokenFromInput (text) {
  const value = text.trim()
  if (!value) return null
  try {
    const fromUrl = new URL(value, window.location.origin).searchParams.get('token')
    if (fromUrl) return fromUrl
  } catch {}
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(value) ? value : null
}

function claimsOf (token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    const json = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)))
    const claims = JSON.parse(json)
    return claims && typeof claims === 'object' ? claims : null
  } catch {
    return null
  }
}

/** The user name a token stands for (its `sub` claim); the server checks the signature. */
export function userOf (token) {
  const sub = token ? claimsOf(token)?.sub : null
  return typeof sub === 'string' && sub ? sub : null
}

/** {issuedAt, expiresAt} in ms since the epoch (`iat`, `exp`), or null if the token has none. */
export function lifetimeOf (token) {
  const claims = token ? claimsOf(token) : null
  if (!claims || typeof claims.exp !== 'number') return null
  const expiresAt = claims.exp * 1000
  const issuedAt = typeof claims.iat === 'number' ? claims.iat * 1000 : expiresAt - 3600_000
  return { issuedAt, expiresAt }
}
