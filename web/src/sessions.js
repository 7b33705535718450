// The journal as people read it: events in version order (typing bursts are journaled when
// their pause ends, after later versions), grouped into editing sessions — a connection's
// events share its session id, and its SESSION event (written when it ends) says who, on
// which device and browser, from when and for how long.
import { labelOf } from './dom.js'

/** Events by version, newest first (ties: the later journaled first). */
export function inVersionOrder (events) {
  return [...events].sort((a, b) => (b.version ?? 0) - (a.version ?? 0) || (b.id ?? 0) - (a.id ?? 0))
}

/** Runs of events of one user and session, newest first: [{user, session, info, events,
 * fields, from, to}]. `info` is the session's SESSION event, found by its id wherever it sorts
 * (others may have edited after the session's last change); a session that changed nothing
 * (a reader) is not listed. A REST change (session "rest") is a group of its own. */
export function sessionsOf (events) {
  const infos = new Map()
  for (const event of events) {
    if (event.type === 'SESSION' && event.session) infos.set(event.session, event)
  }
  const groups = []
  let current = null
  for (const event of inVersionOrder(events)) {
    if (event.type === 'SESSION') continue
    const key = `${event.user || ''}\u0000${event.session || ''}`
    if (!current || current.key !== key || event.session === 'rest' || !event.session) {
      const info = (event.session && event.session !== 'rest' && infos.get(event.session)) || null
      current = { key, user: event.user, session: event.session, info, events: [], fields: [] }
      groups.push(current)
    }
    current.events.push(event)
    const field = event.field ?? (event.data && event.data.field)
    if (field && !current.fields.includes(labelOf(String(field)))) current.fields.push(labelOf(String(field)))
  }
  for (const group of groups) {
    const versions = group.events.map((e) => e.version).filter((v) => v !== null && v !== undefined)
    group.to = versions.length ? Math.max(...versions) : null
    group.from = versions.length ? Math.min(...versions) : null
  }
  return groups
}

/** "Chrome on Linux (desktop) · 3 min" from a SESSION event. */
export function deviceLine (info) {
  if (!info) return 'still editing'
  const browser = info.browser && info.browser !== 'unknown' ? info.browser : 'an unknown browser'
  const os = info.os && info.os !== 'unknown' ? ` on ${info.os}` : ''
  const device = info.device && info.device !== 'other' ? ` (${info.device})` : ''
  return `${browser}${os}${device} · ${duration(info.duration_s)}`
}

export function duration (seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.round(s / 60)} min`
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
}
