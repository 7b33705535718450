// Telling the user when the server's rules did not keep their change of a value field.
//
// The page remembers each value this person set (`fields` map writes made here). Once the server
// has acknowledged everything (write ack 102: the rules' own correction is relayed before the
// ack), a remembered value that the field no longer holds was replaced: a concurrent write won
// by the field's rule (max, precedence, transition...), or the server rejected it
// (VALUE_REJECTED). Not every such outcome is journaled (when Yjs already kept the winning
// value the server writes nothing), so the page compares values, and reads the journal only to
// name who set the value kept. Fields with an open conflict are left to the conflicts dialog.
import { h, labelOf } from './dom.js'
import { valueLabel } from './values.js'

const RULES = {
  max: 'the highest value wins',
  min: 'the lowest value wins',
  precedence: 'the value ranked higher wins',
  transition: 'only allowed moves count, and of moves made at the same time the one ranked higher wins',
  lww: 'the last write wins'
}
const JOURNAL_PAGE = 200
const JOURNAL_PAGES = 5
const SERVER_USER = 'draftsync'
const MINE_KEY = 'overrides.mine'

export async function watchOverrides ({ doc, schema, conn, client, draftId, me, list, local }) {
  const fields = doc.getMap('fields')
  const conflicts = doc.getMap('conflicts')
  const specs = new Map(schema.fields.filter((f) => f.kind === 'value').map((f) => [f.name, f]))
  // field -> the value this person set last, not yet judged; kept with the local copy, so that
  // a value set offline is still judged after a reload
  const stored = await local.read(MINE_KEY)
  const mine = new Map(Array.isArray(stored) ? stored.filter((e) => Array.isArray(e) && specs.has(e[0])) : [])
  const keep = () => local.write(MINE_KEY, [...mine])

  fields.observe((event) => {
    const origin = event.transaction.origin
    if (origin === conn.provider || !event.transaction.local) return
    if (origin !== null && origin !== undefined) return // y-indexeddb loading a stored copy
    for (const key of event.keysChanged) {
      if (!specs.has(key)) continue
      if (fields.has(key)) mine.set(key, fields.get(key))
      else mine.delete(key)
    }
    keep()
  })

  const judge = () => {
    if (!mine.size || conn.state.acked < conn.state.local || !conn.state.handshaken) return
    const open = new Set()
    conflicts.forEach((entry) => { if (entry && entry.field) open.add(entry.field) })
    const lost = []
    for (const [key, value] of mine) {
      const kept = fields.get(key)
      if (!open.has(key) && !same(kept, value)) lost.push({ key, value, kept })
    }
    mine.clear()
    keep()
    if (lost.length) explain(lost)
  }
  conn.onChange(judge)

  const explain = async (lost) => {
    const events = await journal()
    for (const { key, value, kept } of lost) {
      const spec = specs.get(key)
      const rejected = events.find((e) => e.type === 'VALUE_REJECTED' && data(e).field === key &&
        e.user === me && same(data(e).value, value))
      const setter = events.find((e) => e.type === 'FIELD_UPDATED' && data(e).field === key &&
        same(data(e).new, kept) && e.user !== SERVER_USER && !data(e).by_rule)
      const who = setter ? (setter.user === me ? 'you (earlier)' : setter.user) : 'someone else'
      const rule = rejected
        ? `rule ${spec.rule || 'type'}: ${data(rejected).reason === 'wrong type' ? 'a value of the wrong type is refused' : 'that move is not allowed from the value it was made on'}`
        : `rule ${spec.rule}: ${RULES[spec.rule] || 'the server settled it'}`
      // a field nobody has set holds the schema's initial value (what its control shows):
      // name that, not "(empty) ... set by someone else"
      const initial = (kept === null || kept === undefined) && spec.initial !== null && spec.initial !== undefined
      const stays = initial
        ? `${display(spec.initial, spec)} stays, the draft's initial value`
        : `${display(kept, spec)} stays, set by ${who}`
      const text = `${labelOf(key)}: your ${display(value, spec)} was not kept. ${stays} (${rule}).`
      show(text, key)
    }
  }

  const journal = async () => {
    const events = []
    let after = null
    for (let page = 0; page < JOURNAL_PAGES; page++) {
      const query = `?limit=${JOURNAL_PAGE}${after === null ? '' : `&after=${encodeURIComponent(after)}`}`
      const answer = await client().get(`/api/drafts/${encodeURIComponent(draftId)}/events${query}`)
      if (!answer.ok || !answer.body) break
      events.push(...(answer.body.items || []))
      after = answer.body.next
      if (after === null || after === undefined) break
    }
    return events.reverse() // newest first
  }

  const show = (text, key) => {
    const item = h('li', { class: 'notice', dataset: { field: key } },
      h('span', {}, text),
      h('button', { type: 'button', class: 'secondary', 'aria-label': 'Dismiss', onclick: () => item.remove() }, 'OK'))
    list.append(item)
    list.hidden = false
  }
}

function data (event) {
  return { ...event, ...(event.data || {}) }
}

function same (a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null)
}

function display (value, spec) {
  if (value === null || value === undefined) return '(empty)'
  // a state of the schema (IN_REVIEW) as its label ("In review"); other strings as typed
  const states = spec && ['transition', 'precedence'].includes(spec.rule)
  return typeof value === 'string' ? (states ? valueLabel(value) : value) : JSON.stringify(value)
}
