// The drafts page's dashboard: the figures of GET /api/stats, and one line per draft from
// GET /api/dashboard (title, status, completion, words, conflicts, last change and by whom,
// collaborators), paged by cursor ("Show more"), kept live by the drafts feed (feed.js).
// The figures are always the server's: after a change they are read again (at most once a
// second), never added up here, so the page and GET /api/stats agree.
import { pagePath } from './session.js'
import { explain } from './api.js'
import { h, clear, when } from './dom.js'
import { watchFeed } from './feed.js'

const PAGE = 20
const STATS_EVERY_MS = 1000

const STATS = [
  ['totalDrafts', 'Drafts', (v) => String(v)],
  ['completedDrafts', 'Completed', (v) => String(v)],
  ['averageCompletion', 'Average completion', (v) => `${v}%`],
  ['totalWordCount', 'Words', (v) => v.toLocaleString()],
  ['syncedDrafts', 'Synced', (v) => String(v)],
  ['conflictedDrafts', 'With conflicts', (v) => String(v)]
]

// where a status stands, for its colour; an unknown one is neutral
const TONES = {
  CREATING: 'new',
  DRAFT: 'new',
  IN_REVIEW: 'review',
  APPROVED: 'good',
  PUBLISHED: 'good',
  ARCHIVED: 'off',
  REJECTED: 'bad'
}

/** "IN_REVIEW" -> "In review". */
export function statusLabel (value) {
  if (!value) return 'No status'
  const words = String(value).replace(/[_-]+/g, ' ').trim().toLowerCase()
  return words.charAt(0).toUpperCase() + words.slice(1)
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`

/** One draft's line. `kept`: this browser's copy of it, if any (local.js). */
export function draftRow (item, kept, offlineNote) {
  const completion = Math.round(item.completion ?? 0)
  const conflicts = item.openConflicts ?? 0
  const by = item.lastUser ? ` by ${item.lastUser}` : ''
  const people = item.contributors && item.contributors.length ? item.contributors.join(', ') : 'nobody yet'
  return h('li', { class: 'draft', dataset: { draft: item.id, offline: kept ? 'yes' : 'no' } },
    h('a', { href: pagePath(`/d/${encodeURIComponent(item.id)}`) },
      h('span', { class: 'draft-title' }, item.title || item.id),
      h('span', { class: 'draft-meta' },
        `${item.role} · last change ${when(item.lastModified)}${by}`, offlineNote(kept))),
    h('div', { class: 'draft-figures' },
      h('span', { class: 'status-chip', dataset: { tone: TONES[item.status] || 'other', role: 'draft-status' } },
        statusLabel(item.status)),
      h('span', { class: 'completion', dataset: { role: 'draft-completion' } },
        h('progress', { max: 100, value: completion, 'aria-label': `Completion of ${item.title || item.id}` }),
        ` ${completion}%`),
      h('span', { dataset: { role: 'draft-words' } }, plural(item.wordCount ?? 0, 'word', 'words')),
      h('span', { class: conflicts ? 'conflicts open' : 'conflicts', dataset: { role: 'draft-conflicts' } },
        conflicts ? plural(conflicts, 'open conflict', 'open conflicts') : 'No conflicts'),
      h('span', { class: 'collaborators', dataset: { role: 'draft-people' } }, `Edited by ${people}`)))
}

/**
 * Show the dashboard in `stats` (a <dl>) and `list` (a <ul>), with `more` (a button) and
 * `live` (a status line). Resolves false when the list cannot be read (the caller shows the
 * drafts kept in this browser instead).
 */
export async function showDashboard ({ client, getToken, stats, list, more, live, kept, offlineNote }) {
  let next = null
  let lastId = '' // the last id of the pages read
  let statsTimer = null
  const rows = new Map() // id -> li

  const showStats = async () => {
    statsTimer = null
    const answer = await client.get('/api/stats')
    if (!answer.ok) return
    clear(stats)
    for (const [key, label, format] of STATS) {
      const value = answer.body[key] ?? 0
      stats.append(h('div', { class: 'stat' },
        h('dt', {}, label), h('dd', { dataset: { stat: key, value: String(value) } }, format(value))))
    }
  }
  const statsSoon = () => {
    if (statsTimer === null) statsTimer = setTimeout(showStats, STATS_EVERY_MS)
  }

  const place = (item, live) => {
    // by id, as the pages come: a new one past the pages read so far comes with "Show more"
    if (live && !rows.has(item.id) && next !== null && item.id > lastId) return
    const row = draftRow(item, kept.get(item.id), offlineNote)
    const before = rows.get(item.id)
    rows.set(item.id, row)
    if (before) return before.replaceWith(row)
    const after = [...list.querySelectorAll('li.draft')].find((li) => li.dataset.draft > item.id)
    list.querySelector('li.empty')?.remove()
    if (after) after.before(row)
    else list.append(row)
  }

  const readPage = async (cursor) => {
    const query = `/api/dashboard?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
    const answer = await client.get(query)
    if (!answer.ok) return answer
    next = answer.body.next
    for (const item of answer.body.items) place(item, false)
    if (answer.body.items.length) lastId = answer.body.items[answer.body.items.length - 1].id
    more.hidden = next === null
    return answer
  }

  const reload = async () => {
    rows.clear()
    next = null
    lastId = ''
    clear(list)
    const answer = await readPage(null)
    if (answer.ok && !answer.body.items.length) {
      list.append(h('li', { class: 'empty' }, 'No drafts yet: create the first one.'))
    }
    showStats()
    return answer
  }

  const first = await reload()
  if (!first.ok) {
    live.textContent = ''
    return { ok: false, answer: first }
  }
  more.addEventListener('click', async () => {
    more.disabled = true
    const answer = await readPage(next)
    more.disabled = false
    if (!answer.ok) live.textContent = explain(answer, 'Reading more drafts')
  })

  watchFeed({
    getToken,
    onState: (state, why) => {
      live.dataset.state = state
      live.textContent = state === 'live'
        ? 'Live: changes appear as they happen.'
        : state === 'reconnecting' ? 'Reconnecting for live changes…' : why
    },
    onEvent: ({ kind, data }) => {
      if (kind === 'summary') {
        place(data, true)
        statsSoon()
      } else if (kind === 'removed') {
        const row = rows.get(data.id)
        if (row) row.remove()
        rows.delete(data.id)
        statsSoon()
      } else if (kind === 'resync') {
        reload()
      }
    }
  })
  return { ok: true }
}
