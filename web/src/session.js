// The caller's token: taken from `?token=` (what `draftsync serve` prints), kept in
// sessionStorage for this tab, and removed from the address bar so that it is not in the
// history or a copied link. Links to other pages of the editor carry it again (`withToken`).
import { ROOT } from './root.js'

const KEY = 'draftsync.token'

export function takeToken () {
  const url = new URL(window.location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl) {
    window.sessionStorage.setItem(KEY, fromUrl)
    url.searchParams.delete('token')
    window.history.replaceState(null, '', url.pathname + url.search + url.hash)
  }
  return window.sessionStorage.getItem(KEY)
}

/** `path` of the editor (`/`, `/d/…`) under the server's root, with the token. */
export function withToken (path, token) {
  const url = new URL(ROOT + path, window.location.origin)
  if (token) url.searchParams.set('token', token)
  return url.pathname + url.search
}

/** The user name a token stands for (its `sub` claim); the server checks the signature. */
export function userOf (token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    const json = new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)))
    const sub = JSON.parse(json).sub
    return typeof sub === 'string' && sub ? sub : null
  } catch {
    return null
  }
}
