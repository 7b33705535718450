// The history panel: the journal (GET /api/drafts/{id}/events: who changed which field, when),
// a preview of the draft at a version (GET /api/drafts/{id}/versions/{v}) and restoring one
// (POST /api/drafts/{id}/restore {version}: a new version equal to the old one). Typing is
// journaled in bursts, closed after a pause: Refresh shows the latest. Endpoints a
// server does not have yet are said so in the panel; the rest of the page is unaffected.
import { h, clear, labelOf, when } from './dom.js'
import { explain } from './api.js'
import { richPreview } from './richtext.js'

const PAGE = 200
const MAX_PAGES = 5

export function historyDialog ({ dialog, client, draftId, canWrite }) {
  const list = dialog.querySelector('[data-role=event-list]')
  const preview = dialog.querySelector('[data-role=preview]')
  const message = dialog.querySelector('[data-role=history-message]')
  const form = dialog.querySelector('[data-role=version-form]')
  const versionInput = form.querySelector('input')
  const base = `/api/drafts/${encodeURIComponent(draftId)}`
  const say = (text) => { message.textContent = text }

  const loadEvents = async () => {
    clear(list).append(h('li', { class: 'empty' }, 'Loading…'))
    const events = []
    let after = null
    for (let page = 0; page < MAX_PAGES; page++) {
      const query = `?limit=${PAGE}${after === null ? '' : `&after=${encodeURIComponent(after)}`}`
      const answer = await client.get(`${base}/events${query}`)
      if (!answer.ok) {
        clear(list).append(h('li', { class: 'empty' }, explain(answer, 'The journal')))
        return
      }
      events.push(...(answer.body.items || []))
      after = answer.body.next
      if (after === null || after === undefined) break
    }
    clear(list)
    if (!events.length) list.append(h('li', { class: 'empty' }, 'No changes recorded yet.'))
    for (const event of events.reverse()) list.append(eventItem(event))
  }

  // an event: {id, type, version, user, session, clientId, at, ...its data (field, old/new,
  // inserted/deleted, from_version, ...)}; an older `data` object is read as well
  const eventItem = (event) => {
    const data = { ...event, ...(event.data || {}) }
    const field = data.field
    const version = event.version
    return h('li', { class: 'event' },
      h('div', { class: 'event-what' },
        h('strong', {}, describe(event.type)),
        field ? ` · ${labelOf(String(field))}` : '',
        detail(event.type, data)),
      h('div', { class: 'event-who' },
        `${event.user || 'server'} · ${when(event.at ?? event.created_at)}`,
        version !== undefined && version !== null ? ` · v${version}` : ''),
      version !== undefined && version !== null
        ? h('div', { class: 'event-actions' },
          h('button', { type: 'button', class: 'secondary', onclick: () => showVersion(version) }, `Preview v${version}`))
        : null)
  }

  const showVersion = async (version) => {
    clear(preview).append(h('p', {}, `Loading version ${version}…`))
    const answer = await client.get(`${base}/versions/${encodeURIComponent(version)}`)
    if (!answer.ok) {
      clear(preview).append(h('p', { class: 'empty' }, explain(answer, `Version ${version}`)))
      return
    }
    const state = answer.body.state || answer.body
    const rows = []
    const rich = answer.body.richtext || {}
    for (const [name, text] of Object.entries(state.texts || {})) rows.push([name, (rich[name] && text && richPreview(rich[name])) || text || '(empty)'])
    for (const [name, value] of Object.entries(state.fields || {})) rows.push([name, JSON.stringify(value)])
    for (const [name, items] of Object.entries(state.lists || {})) rows.push([name, items.join(', ') || '(none)'])
    clear(preview).append(
      h('h3', {}, `Version ${answer.body.version ?? version}`),
      h('dl', {}, ...rows.flatMap(([name, value]) => [h('dt', {}, labelOf(name)), h('dd', {}, value)])),
      h('button', {
        type: 'button',
        disabled: !canWrite(),
        onclick: (event) => restore(version, event.currentTarget)
      }, `Restore version ${version}`))
  }

  const restore = async (version, button) => {
    button.disabled = true
    say(`Restoring version ${version}…`)
    const answer = await client.post(`${base}/restore`, { version: Number(version) })
    button.disabled = false
    if (answer.ok) {
      say(`Restored version ${version}${answer.body && answer.body.version ? ` as version ${answer.body.version}` : ''}.`)
      loadEvents()
    } else {
      say(explain(answer, 'Restoring'))
    }
  }

  dialog.querySelector('[data-role=refresh]').addEventListener('click', loadEvents)
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const version = Number(versionInput.value)
    if (Number.isInteger(version) && version >= 0) showVersion(version)
  })

  return {
    open: () => {
      say('')
      clear(preview)
      if (!dialog.open) dialog.showModal()
      loadEvents()
    }
  }
}

const NAMES = {
  DRAFT_CREATED: 'Created',
  FIELD_UPDATED: 'Changed',
  CONFLICT_OPENED: 'Conflict opened',
  CONFLICT_RESOLVED: 'Conflict resolved',
  VALUE_REJECTED: 'Value rejected',
  RESTORED: 'Restored',
  ACCESS_CHANGED: 'Sharing changed'
}

function describe (type) {
  return NAMES[type] || labelOf(String(type || 'change').toLowerCase())
}

function detail (type, data) {
  if (data.kind === 'text' && (data.inserted || data.deleted)) {
    return ` (+${data.inserted || 0} / −${data.deleted || 0} characters)`
  }
  if (type === 'RESTORED' && data.from_version !== undefined) return ` from v${data.from_version}`
  if ('new' in data || 'value' in data) {
    const value = 'new' in data ? data.new : data.value
    return ` → ${typeof value === 'string' ? value : JSON.stringify(value)}`
  }
  return ''
}
