// Renewing the sign-in token before it expires (POST /api/token/renew {draftId}: a fresh token
// of the same user and lifetime; 401 once expired, 404 once the user lost the draft). The
// renewal runs when a third of the lifetime is left (at most 5 minutes before expiry), and
// again when the browser comes back online if it could not reach the server. An expired token
// cannot be renewed: the page says so and takes a new link; local work waits in IndexedDB.
import { api } from './api.js'
import { lifetimeOf } from './session.js'

const MAX_LEAD_MS = 5 * 60 * 1000
const RETRY_MS = 5000

export function keepTokenFresh ({ getToken, draftId, onRenewed, onExpired, onRevoked }) {
  let timer = null
  let stopped = false
  const clear = () => { if (timer !== null) clearTimeout(timer); timer = null }

  const schedule = () => {
    clear()
    if (stopped) return
    const life = lifetimeOf(getToken())
    if (!life) return
    const lead = Math.min(MAX_LEAD_MS, (life.expiresAt - life.issuedAt) / 3)
    const delay = life.expiresAt - lead - Date.now()
    if (life.expiresAt <= Date.now()) {
      onExpired()
      return
    }
    timer = setTimeout(renew, Math.max(0, delay))
  }

  const renew = async () => {
    timer = null
    if (stopped) return
    const token = getToken()
    const answer = await api(token).post('/api/token/renew', draftId ? { draftId } : {})
    if (stopped || getToken() !== token) return // another tab or the user gave a new one
    if (answer.ok && answer.body && answer.body.token) {
      onRenewed(answer.body.token)
      schedule()
    } else if (answer.status === 401) {
      onExpired()
    } else if (answer.status === 404 || answer.status === 403) {
      onRevoked()
    } else {
      // unreachable or a server error: try again while the token lasts, and when back online
      const life = lifetimeOf(token)
      if (life && life.expiresAt > Date.now()) timer = setTimeout(renew, Math.min(RETRY_MS, life.expiresAt - Date.now()))
      else onExpired()
    }
  }

  const cameOnline = () => {
    const life = lifetimeOf(getToken())
    if (life && timer !== null && life.expiresAt > Date.now()) {
      const lead = Math.min(MAX_LEAD_MS, (life.expiresAt - life.issuedAt) / 3)
      if (Date.now() >= life.expiresAt - lead) { clear(); renew() }
    }
  }
  window.addEventListener('online', cameOnline)
  schedule()
  return {
    /** A new token came from elsewhere (pasted, another tab): plan its renewal. */
    reschedule: schedule,
    stop: () => { stopped = true; clear(); window.removeEventListener('online', cameOnline) }
  }
}
