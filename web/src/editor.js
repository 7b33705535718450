// GET /d/{draft_id}: the draft form, live. Wires the parts together; each lives in its module.
import * as Y from 'yjs'
import { takeToken, userOf, withToken } from './session.js'
import { api, explain } from './api.js'
import { connect } from './connection.js'
import { announce, showPresence } from './presence.js'
import { buildForm } from './form.js'
import { showProgress } from './progress.js'
import { conflictsDialog, openConflicts } from './conflicts.js'
import { historyDialog } from './history.js'
import { ROOT } from './root.js'

const $ = (role) => document.querySelector(`[data-role=${role}]`)

async function main () {
  const token = takeToken()
  const draftId = decodeURIComponent(window.location.pathname.slice(ROOT.length).replace(/^\/d\//, ''))
  $('home').href = withToken('/', token)
  const banner = (text) => {
    $('banner').textContent = text
    $('banner').hidden = !text
  }
  const showStatus = ({ name, label, detail }) => {
    const status = $('status')
    status.dataset.status = name
    status.title = detail
    $('status-label').textContent = label
    $('status-detail').textContent = detail
  }
  if (!token) {
    showStatus({ name: 'error', label: 'Error', detail: 'No sign-in token.' })
    banner('No sign-in token: open the link that `draftsync serve` printed (…/?token=…).')
    return
  }
  const client = api(token)
  const schemaAnswer = await client.get('/api/schema')
  if (!schemaAnswer.ok) {
    showStatus({ name: 'error', label: 'Error', detail: explain(schemaAnswer, 'Loading the form') })
    banner(explain(schemaAnswer, 'Loading the form'))
    return
  }
  const schema = schemaAnswer.body
  const doc = new Y.Doc()
  const conn = connect({ doc, draftId, token })
  const user = userOf(token) || 'anonymous'
  announce(conn.awareness, user)
  showPresence(conn.awareness, $('people'))

  const conflictsMap = doc.getMap('conflicts')
  const canWrite = () => !conn.state.readOnly && !conn.state.error
  const conflicts = conflictsDialog({ dialog: $('conflicts'), conflictsMap, client, draftId, canResolve: canWrite })
  const history = historyDialog({ dialog: $('history'), client, draftId, canWrite })
  const form = buildForm({ schema, doc, awareness: conn.awareness, container: $('form'), onConflict: conflicts.open })
  $('form').addEventListener('submit', (event) => event.preventDefault())
  showProgress({ doc, schema, bar: $('progress'), text: $('progress-text') })

  const title = doc.getText('title')
  const showTitle = () => {
    const text = title.toString().trim()
    $('title').textContent = text || 'Untitled draft'
    document.title = `${text || draftId} · draftsync`
  }
  title.observe(showTitle)
  showTitle()

  let readOnlyShown = false
  const refresh = () => {
    const open = openConflicts(conflictsMap)
    showStatus(conn.status(open.length))
    form.markConflicts(open)
    $('conflict-count').textContent = String(open.length)
    $('open-conflicts').classList.toggle('has-conflicts', open.length > 0)
    if (conn.state.error) {
      banner(`${conn.state.error.message}${conn.state.error.reason ? ` (${conn.state.error.reason})` : ''}`)
      form.setReadOnly(true)
    } else if (conn.state.readOnly && !readOnlyShown) {
      readOnlyShown = true
      banner('You can read this draft but not change it.')
      form.setReadOnly(true)
    }
  }
  conn.onChange(refresh)
  conflictsMap.observe(refresh)
  $('open-conflicts').addEventListener('click', conflicts.open)
  $('open-history').addEventListener('click', history.open)
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.querySelector('[data-role=close]').addEventListener('click', () => dialog.close())
  }
  refresh()
  conn.start()
  // for the browser tests and the curious: the live doc, its provider and the status name
  window.draftsync = { doc, provider: conn.provider, status: () => $('status').dataset.status }
}

main().catch((error) => {
  console.error(error)
  const banner = $('banner')
  banner.textContent = `The editor failed to start: ${error.message}`
  banner.hidden = false
})
