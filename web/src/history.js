// The history panel. The journal (GET /api/drafts/{id}/events) in version order, grouped into
// editing sessions (who, on which device, when, which fields); the named versions (GET/POST
// /api/drafts/{id}/versions: "Save version" names the current one); choosing a version shows
// what changed since then, or between two chosen versions (GET /api/drafts/{id}/diff, computed
// by the server); restoring one (POST /api/drafts/{id}/restore) first says what it will change
// and asks, then offers to undo it (restoring the version before). Endpoints a server does not
// have yet are said so in the panel; the rest of the page is unaffected.
import { h, clear, labelOf, when } from './dom.js'
import { explain } from './api.js'
import { richPreview } from './richtext.js'
import { chips, diffView, changedNames, hasFormatting, readable } from './diffview.js'
import { sessionsOf, deviceLine } from './sessions.js'

const PAGE = 200
const MAX_PAGES = 5

export function historyDialog ({ dialog, client, draftId, canWrite }) {
  const list = dialog.querySelector('[data-role=event-list]')
  const named = dialog.querySelector('[data-role=named-versions]')
  const preview = dialog.querySelector('[data-role=preview]')
  const message = dialog.querySelector('[data-role=history-message]')
  const form = dialog.querySelector('[data-role=version-form]')
  const [versionInput, otherInput] = form.querySelectorAll('input')
  const saveForm = dialog.querySelector('[data-role=save-version-form]')
  const base = `/api/drafts/${encodeURIComponent(draftId)}`
  const say = (...parts) => { clear(message).append(...parts) }

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
    const sessions = sessionsOf(events.map((event) => ({ ...(event.data || {}), ...event })))
    if (!sessions.length) list.append(h('li', { class: 'empty' }, 'No changes recorded yet.'))
    for (const session of sessions) list.append(sessionItem(session))
  }

  const loadNamed = async () => {
    const answer = await client.get(`${base}/versions`)
    clear(named)
    if (!answer.ok) return // an older server: the journal still lists what it has
    for (const item of answer.body.items || []) {
      named.append(h('li', { class: 'named-version' },
        h('span', {}, h('strong', {}, `★ ${item.label}`), ` · v${item.version} · ${item.user || 'server'} · ${when(item.at)}`),
        h('button', { type: 'button', class: 'secondary', onclick: () => choose(item.version) }, `Show v${item.version}`)))
    }
  }

  const sessionItem = (session) => {
    const start = session.info ? session.info.started_at : (session.events[session.events.length - 1] || {}).at
    const head = h('div', { class: 'session-head' },
      h('strong', {}, session.user || 'server'),
      session.session === 'rest' || session.session === null
        ? ` · ${when(start)}`
        : ` · ${when(start)} · ${deviceLine(session.info)}`,
      session.fields.length ? h('div', { class: 'session-fields' }, session.fields.join(', ')) : null,
      session.from !== null && session.to !== null && session.from > 0
        ? h('button', {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            versionInput.value = String(session.from - 1)
            otherInput.value = String(session.to)
            compare(session.from - 1, session.to)
          }
        }, 'What this session changed')
        : null)
    return h('li', { class: 'session' }, head,
      h('ol', { class: 'session-events' }, ...session.events.map(eventItem)))
  }

  // an event: {id, type, version, user, session, clientId, at, ...its data}
  const eventItem = (event) => {
    const version = event.version
    const hasVersion = version !== undefined && version !== null
    const isNamed = event.type === 'VERSION_NAMED'
    return h('li', { class: isNamed ? 'event event-named' : 'event', dataset: hasVersion ? { version } : {} },
      h('div', { class: 'event-what' },
        h('strong', {}, isNamed ? `★ ${event.label}` : describe(event.type)),
        event.field ? ` · ${labelOf(String(event.field))}` : '',
        detail(event)),
      h('div', { class: 'event-who' },
        h('span', {}, `${event.user || 'server'} · ${when(event.at ?? event.created_at)}`,
          hasVersion ? ` · v${version}` : ''),
        hasVersion
          ? h('button', { type: 'button', class: 'secondary', onclick: () => choose(version) }, `Show v${version}`)
          : null))
  }

  const choose = (version) => {
    versionInput.value = String(version)
    otherInput.value = ''
    return compare(version, null)
  }

  // What changed from `from` to `to` (null: the current draft), and version `from` whole.
  const compare = async (from, to) => {
    const title = to === null ? `Version ${from} compared with the current draft` : `Version ${from} compared with version ${to}`
    clear(preview).append(h('p', {}, `Loading version ${from}…`))
    const query = `?from=${encodeURIComponent(from)}${to === null ? '' : `&to=${encodeURIComponent(to)}`}`
    const [diff, whole] = await Promise.all([
      client.get(`${base}/diff${query}`),
      client.get(`${base}/versions/${encodeURIComponent(from)}`)
    ])
    if (!diff.ok && !whole.ok) {
      clear(preview).append(h('p', { class: 'empty' }, explain(whole, `Version ${from}`)))
      return
    }
    clear(preview).append(h('h3', {}, title))
    if (diff.ok) {
      preview.append(
        h('p', { class: 'hint' }, 'Marked: ', h('ins', {}, 'added'),
          hasFormatting(diff.body) ? [', ', h('del', {}, 'removed'), ' and ', h('span', { class: 'diff-formatted' }, 'formatted')] : [' and ', h('del', {}, 'removed')],
          ` since version ${from}.`),
        diffView(diff.body))
    } else {
      preview.append(h('p', { class: 'empty' }, explain(diff, 'The comparison')))
    }
    if (whole.ok) preview.append(wholeVersion(from, whole.body.state || whole.body, whole.body.richtext || {}))
    preview.append(h('button', {
      type: 'button',
      disabled: !canWrite(),
      onclick: () => confirmRestore(from)
    }, `Restore version ${from}…`))
  }

  const wholeVersion = (version, state, rich) => {
    const rows = []
    for (const [name, text] of Object.entries(state.texts || {})) rows.push([name, (rich[name] && text && richPreview(rich[name])) || text || '(empty)'])
    for (const [name, value] of Object.entries(state.fields || {})) rows.push([name, readable(value)])
    for (const [name, items] of Object.entries(state.lists || {})) rows.push([name, chips(items)])
    return h('details', { class: 'whole-version' },
      h('summary', {}, `The whole of version ${version}`),
      h('dl', {}, ...rows.flatMap(([name, value]) => [h('dt', {}, labelOf(name)), h('dd', {}, value)])))
  }

  // Restoring says what it will change (the diff from the current draft to the version).
  const confirmRestore = async (version) => {
    const box = h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm restore' }, h('p', {}, 'Checking what would change…'))
    preview.querySelector('.confirm')?.remove()
    preview.append(box)
    const current = await client.get(`${base}/diff?from=${encodeURIComponent(version)}`)
    if (!current.ok) {
      clear(box).append(h('p', {}, explain(current, 'The comparison')))
      return
    }
    const before = current.body.toVersion
    const reverse = await client.get(`${base}/diff?from=${encodeURIComponent(before)}&to=${encodeURIComponent(version)}`)
    if (!reverse.ok) {
      clear(box).append(h('p', {}, explain(reverse, 'The comparison')))
      return
    }
    if (!(reverse.body.changes || []).length) {
      clear(box).append(h('p', {}, `Version ${version} is the same as the current draft: nothing to restore.`))
      return
    }
    clear(box).append(
      h('p', { class: 'confirm-question' }, `Restore version ${version}? This changes ${changedNames(reverse.body)}:`),
      diffView(reverse.body),
      h('div', { class: 'confirm-actions' },
        h('button', { type: 'button', onclick: (event) => restore(version, event.currentTarget, box) }, 'Restore'),
        h('button', { type: 'button', class: 'secondary', onclick: () => box.remove() }, 'Cancel')))
  }

  const restore = async (version, button, box) => {
    button.disabled = true
    say(`Restoring version ${version}…`)
    const answer = await client.post(`${base}/restore`, { version: Number(version) })
    box.remove()
    if (!answer.ok) {
      say(explain(answer, 'Restoring'))
      return
    }
    const now = answer.body && answer.body.version
    const previous = Number.isInteger(now) && now > 0 ? now - 1 : null
    say(`Restored version ${version}${now ? ` as version ${now}` : ''}.`,
      previous === null
        ? ''
        : h('button', { type: 'button', class: 'secondary undo', onclick: () => undo(previous) }, 'Undo'))
    loadEvents()
  }

  const undo = async (previous) => {
    say(`Undoing: restoring version ${previous}…`)
    const answer = await client.post(`${base}/restore`, { version: previous })
    say(answer.ok
      ? `Undone: the draft is as it was at version ${previous}${answer.body && answer.body.version ? ` (now version ${answer.body.version})` : ''}.`
      : explain(answer, 'Undoing'))
    loadEvents()
  }

  dialog.querySelector('[data-role=refresh]').addEventListener('click', () => { loadEvents(); loadNamed() })
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const version = Number(versionInput.value)
    const other = otherInput.value.trim() === '' ? null : Number(otherInput.value)
    if (!Number.isInteger(version) || version < 0) return
    if (other !== null && (!Number.isInteger(other) || other < 0)) return
    compare(version, other)
  })
  saveForm.addEventListener('submit', async (event) => {
    event.preventDefault()
    const input = saveForm.querySelector('input')
    const label = input.value.trim()
    if (!label) { say('Give the version a name first.'); return }
    if (!canWrite()) { say('Viewers cannot save versions.'); return }
    const answer = await client.post(`${base}/versions`, { label })
    if (!answer.ok) { say(explain(answer, 'Saving the version')); return }
    input.value = ''
    say(`Saved version ${answer.body.version} as “${answer.body.label}”.`)
    loadNamed()
    loadEvents()
  })

  return {
    open: () => {
      say('')
      clear(preview)
      saveForm.querySelector('button').disabled = !canWrite()
      if (!dialog.open) dialog.showModal()
      loadEvents()
      loadNamed()
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

// Text events say which field was typed in: the journal counts text in UTF-8 bytes, so the
// character counts are the diff's (choose the version).
function detail (data) {
  if (data.kind === 'text') return ' (typed)'
  if (data.type === 'RESTORED' && data.from_version !== undefined) return ` from v${data.from_version}`
  if ('new' in data || 'value' in data) {
    const value = 'new' in data ? data.new : data.value
    if (Array.isArray(value)) return h('span', { class: 'event-chips' }, ' → ', chips(value))
    return ` → ${readable(value)}`
  }
  return ''
}
