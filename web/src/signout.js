// Signing out deletes every copy kept in this browser for the user (local.js `forgetLocal`), so
// changes the server lacks go with them. Both sign-out buttons (drafts.js, editor.js) ask first,
// by one rule: a draft counts when the server may lack some of its changes (`pending` in the
// index of copies, or the open draft's own state: not acknowledged, or refused), and the
// question says how many, which, and how many of those this browser could not fully keep either
// (a failed write: `unsaved`), since those are partly lost already. A copy whose write failed
// while the server holds every change loses nothing by signing out: it is not counted.
import { localDrafts } from './local.js'

const NAMED = 3 // titles named in the question; more are counted

/**
 * The question to ask before signing `user` out, or null when nothing would be lost.
 * `open`: the draft this page edits, {id, title, unsent, unsaved}, fresher than the index (which
 * another tab of it may have written since: either one saying unsent counts).
 */
export function signOutQuestion (user, open = null) {
  const drafts = new Map(localDrafts(user).map((d) => [d.id, {
    title: d.title || d.id, unsent: Boolean(d.pending), unsaved: d.unsaved || false
  }]))
  if (open) {
    const listed = drafts.get(open.id)
    drafts.set(open.id, {
      title: open.title || (listed && listed.title) || open.id,
      unsent: open.unsent || Boolean(listed && listed.unsent),
      unsaved: open.unsaved || (listed && listed.unsaved) || false
    })
  }
  const unsent = [...drafts.values()].filter((d) => d.unsent)
  if (!unsent.length) return null
  const count = unsent.length
  const one = count === 1
  const titles = unsent.slice(0, NAMED).map((d) => `"${d.title}"`).join(', ') + (count > NAMED ? ` and ${count - NAMED} more` : '')
  const lines = [`${count} draft${one ? ' has' : 's have'} changes not yet on the server: ${titles}.`]
  const notHere = unsent.filter((d) => d.unsaved)
  if (notHere.length) {
    const reasons = [...new Set(notHere.map((d) => d.unsaved).filter((r) => typeof r === 'string'))]
    const which = one ? 'It' : `${notHere.length} of them`
    lines.push(`${which} could not be fully saved in this browser either${reasons.length ? ` (${reasons.join(', ')})` : ''}.`)
  }
  lines.push('Signing out deletes the copies kept in this browser, and those changes with them. Sign out anyway?')
  return lines.join(' ')
}
