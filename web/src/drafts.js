// GET /: the dashboard of the drafts the caller can reach (dashboard.js: the figures of
// GET /api/stats, a line per draft from GET /api/dashboard, live through the drafts feed), a
// form that creates one (POST /api/drafts {title}) and one that opens a draft by id. Drafts
// kept in this browser (local.js) are marked "available offline", or "not saved here" when the
// last write of their copy failed (a full disk); when the server cannot be reached, they are
// the list. The token is kept per origin (session.js): links carry none. "Sign out" forgets the
// token and every copy kept here for this user, asking first when that loses changes (signout.js).
import { forgetToken, pagePath, takeToken, userOf } from './session.js'
import { api, explain } from './api.js'
import { h, clear, when } from './dom.js'
import { forgetLocal, localDrafts } from './local.js'
import { registerServiceWorker, whenControlled } from './offline.js'
import { showDashboard } from './dashboard.js'
import { signOutQuestion } from './signout.js'

const $ = (role) => document.querySelector(`[data-role=${role}]`)
const DRAFT_ID = /^[A-Za-z0-9_-]{1,128}$/

function main () {
  registerServiceWorker()
  const token = takeToken()
  const client = api(token)
  const open = (id) => { window.location.href = pagePath(`/d/${encodeURIComponent(id)}`) }
  const say = (text) => { $('message').textContent = text }
  if (!token) {
    say('No sign-in token: open the link that `draftsync serve` printed (…/?token=…).')
    $('list').replaceChildren(h('li', { class: 'empty' }, 'Sign in to see your drafts.'))
    return
  }
  const user = userOf(token) || 'unknown user'
  $('user').textContent = `Signed in as ${user}`
  $('sign-out').hidden = false
  $('sign-out').addEventListener('click', async () => {
    const question = signOutQuestion(user)
    if (question && !window.confirm(question)) return
    forgetToken()
    await forgetLocal(user)
    window.location.href = pagePath('/')
  })

  $('create').addEventListener('submit', async (event) => {
    event.preventDefault()
    const title = $('new-title').value.trim()
    const button = event.submitter || $('create').querySelector('button')
    button.disabled = true
    const answer = await client.post('/api/drafts', title ? { title } : {})
    button.disabled = false
    if (answer.ok && answer.body && answer.body.id) return open(answer.body.id)
    if (answer.status === 404 || answer.status === 405) {
      // no REST API on this server: connecting to an unknown id creates the draft
      return open(`draft-${Math.random().toString(36).slice(2, 10)}`)
    }
    say(explain(answer, 'Creating a draft'))
  })
  $('open').addEventListener('submit', (event) => {
    event.preventDefault()
    const id = $('open-id').value.trim()
    if (DRAFT_ID.test(id)) return open(id)
    say('A draft id is 1 to 128 letters, digits, "-" or "_".')
  })
  listDrafts(client, user, token)
  // The form's schema, asked while online so that the service worker keeps it (sw.js): a
  // draft opened offline from this list then has its form, even if no editor was opened here
  // online before. Asked again through the worker once it takes control (a first visit).
  const keepSchema = () => { client.get('/api/schema').catch(() => {}) }
  keepSchema()
  whenControlled(keepSchema)
}

/** What this browser's copy of a draft holds: everything, or not (a write failed, local.js). */
function keptWords (kept) {
  const words = [kept.unsaved ? `not saved here: ${kept.unsaved}` : 'available offline']
  if (kept.pending) words.push('changes not sent yet')
  return words.join(' · ')
}

function offlineNote (kept) {
  if (!kept) return null
  return h('span', { class: 'offline-note', dataset: { saved: kept.unsaved ? 'failed' : 'browser' } }, ` · ${keptWords(kept)}`)
}

async function listDrafts (client, user, token) {
  const list = $('list')
  const kept = new Map(localDrafts(user).map((d) => [d.id, d]))
  const shown = await showDashboard({
    client,
    getToken: () => token,
    stats: $('stats'),
    list,
    more: $('more'),
    live: $('live'),
    kept,
    offlineNote
  })
  if (shown.ok) return
  $('stats-card').hidden = true
  const why = navigator.onLine === false ? 'You are offline.' : explain(shown.answer, 'The list of drafts')
  clear(list).append(h('li', { class: 'empty' }, `${why} Open a draft by its id or create one.`))
  if (kept.size) list.append(h('li', { class: 'empty' }, 'Kept in this browser, available offline:'))
  for (const draft of kept.values()) {
    list.append(h('li', { class: 'draft', dataset: { draft: draft.id, offline: 'yes' } },
      h('a', { href: pagePath(`/d/${encodeURIComponent(draft.id)}`) },
        h('span', { class: 'draft-title' }, draft.title || draft.id),
        draft.unsaved
          ? h('span', { class: 'draft-meta', dataset: { saved: 'failed' } },
            h('span', { class: 'offline-note', dataset: { saved: 'failed' } }, keptWords(draft)))
          : h('span', { class: 'draft-meta', dataset: { saved: 'browser' } }, `saved here ${when(draft.at)}`, offlineNote(draft)))))
  }
}

main()
