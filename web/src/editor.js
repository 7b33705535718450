// GET /d/{draft_id}: the draft form, live. Wires the parts together; each lives in its module.
//
// Order matters for "never lose work": the copy kept in this browser (local.js) is loaded into
// the doc before the socket connects, so the first sync sends the server whatever was typed
// offline; the token is renewed before it expires (tokens.js); a change the server would
// refuse for its size is refused here first (limits.js).
import * as Y from 'yjs'
import { forgetToken, onTokenChange, storedToken, storeToken, takeToken, tokenFromInput, userOf } from './session.js'
import { api, explain } from './api.js'
import { connect } from './connection.js'
import { forgetLocal, keepLocally } from './local.js'
import { keepTokenFresh } from './tokens.js'
import { sizeGuard, sizeText } from './limits.js'
import { watchOverrides } from './overrides.js'
import { registerServiceWorker, whenControlled } from './offline.js'
import { announce, showPresence } from './presence.js'
import { buildForm } from './form.js'
import { showProgress } from './progress.js'
import { conflictsDialog, openConflicts } from './conflicts.js'
import { historyDialog } from './history.js'
import { setupSharing } from './sharing.js'
import { ROOT } from './root.js'
import { labelOf } from './dom.js'
import { signOutQuestion } from './signout.js'

const $ = (role) => document.querySelector(`[data-role=${role}]`)

async function main () {
  registerServiceWorker()
  let token = takeToken()
  const draftId = decodeURIComponent(window.location.pathname.slice(ROOT.length).replace(/^\/d\//, ''))
  $('home').href = `${ROOT}/`
  // an error alarms (role=alert, red); "info" (read-only, for instance) only informs
  const banner = (text, tone = 'error') => {
    $('banner').textContent = text
    $('banner').hidden = !text
    $('banner').dataset.tone = tone
    $('banner').setAttribute('role', tone === 'info' ? 'status' : 'alert')
  }
  const showStatus = ({ name, label, detail, saved }) => {
    const status = $('status')
    status.dataset.status = name
    status.dataset.saved = saved || 'no' // 'browser', 'failed' (a write to IndexedDB failed) or 'no'
    status.title = detail
    $('status-label').textContent = label
    $('status-detail').textContent = detail
  }
  if (!token) {
    showStatus({ name: 'error', label: 'Error', detail: 'No sign-in token.' })
    banner('No sign-in token: open the link that `draftsync serve` printed (…/?token=…).')
    return
  }
  const user = userOf(token) || 'anonymous'
  $('user').textContent = user
  // every call uses the current token (renewed, pasted, or from another tab)
  const client = {
    get: (path) => api(token).get(path),
    post: (path, body) => api(token).post(path, body)
  }
  const relink = $('relink')
  const schemaAnswer = await client.get('/api/schema')
  if (!schemaAnswer.ok) {
    showStatus({ name: 'error', label: 'Error', detail: explain(schemaAnswer, 'Loading the form') })
    banner(`${explain(schemaAnswer, 'Loading the form')} Work kept in this browser is not lost: open a new link to this draft to go on.`)
    relink.hidden = false
    relink.addEventListener('submit', (event) => {
      event.preventDefault()
      const fresh = tokenFromInput($('relink-input').value)
      if (fresh) window.location.href = `${ROOT}/d/${encodeURIComponent(draftId)}?token=${encodeURIComponent(fresh)}`
    })
    return
  }
  const schema = schemaAnswer.body
  whenControlled(() => client.get('/api/schema')) // for the worker to keep, for offline reloads
  const doc = new Y.Doc()
  const local = await keepLocally({ doc, user, draftId })
  const limits = schema.limits || {}
  const conn = connect({ doc, draftId, token, local, maxMessageBytes: limits.maxMessageBytes })
  announce(conn.awareness, user)
  showPresence(conn.awareness, $('people'))

  const refusal = $('refusal')
  const guard = sizeGuard({
    maxMessageBytes: limits.maxMessageBytes,
    onRefused: ({ field, bytes, limit }) => {
      refusal.textContent = `Change too large: ${sizeText(bytes)} for ${labelOf(field)}, and the server takes at most ${sizeText(limit)} at once. Nothing was sent; the rest of your work is kept.`
      refusal.hidden = false
    }
  })

  const conflictsMap = doc.getMap('conflicts')
  const canWrite = () => !conn.state.readOnly && !conn.state.error
  const conflicts = conflictsDialog({ dialog: $('conflicts'), conflictsMap, client, draftId, canResolve: canWrite })
  const history = historyDialog({ dialog: $('history'), client, draftId, canWrite })
  const form = buildForm({ schema, doc, awareness: conn.awareness, container: $('form'), onConflict: conflicts.open, guard })
  $('form').addEventListener('submit', (event) => event.preventDefault())
  showProgress({ doc, schema, bar: $('progress'), text: $('progress-text') })
  await watchOverrides({ doc, schema, conn, client: () => client, draftId, me: user, list: $('notices'), local })

  const title = doc.getText('title')
  const showTitle = () => {
    const text = title.toString().trim()
    $('title').textContent = text || 'Untitled draft'
    document.title = `${text || draftId} · draftsync`
  }
  title.observe(showTitle)
  showTitle()

  // tokens: renewed before expiry; a fresh one pasted here or stored by another tab is used at once
  const useToken = (fresh) => {
    token = fresh
    // another person signed in on this browser meanwhile: their token stays the stored one
    const stored = storedToken()
    if (!stored || userOf(stored) === user) storeToken(fresh)
    relink.hidden = true
    renewal.reschedule()
    conn.reconnect(fresh)
  }
  const tokenTrouble = (text) => {
    banner(text)
    relink.hidden = false
  }
  const renewal = keepTokenFresh({
    getToken: () => token,
    draftId,
    onRenewed: useToken,
    onExpired: () => tokenTrouble('Your sign-in has expired. Your work is kept in this browser: paste a new link (or token) below to send it.'),
    onRevoked: () => tokenTrouble('You no longer have access to this draft. Your work is kept in this browser.')
  })
  onTokenChange((fresh) => {
    if (fresh && fresh !== token && userOf(fresh) === user) useToken(fresh)
    else if (!fresh) {
      // signed out in another tab: stop, and let that tab delete the copy kept here
      renewal.stop()
      conn.stop()
      local.destroy()
      signedOutElsewhere = true
      refresh()
    }
  })
  relink.addEventListener('submit', (event) => {
    event.preventDefault()
    const input = $('relink-input')
    const fresh = tokenFromInput(input.value)
    input.value = ''
    if (!fresh) return banner('That is not a draftsync link or token.')
    if (userOf(fresh) !== user) {
      // another person's link: their page, with their own copy
      window.location.href = `${ROOT}/d/${encodeURIComponent(draftId)}?token=${encodeURIComponent(fresh)}`
      return
    }
    banner('')
    useToken(fresh)
  })
  $('retry').addEventListener('click', () => {
    refusal.hidden = true
    // The editor's undo history holds removed text (for redo), and a resync would send it
    // again: a reload rebuilds the doc from the copy kept here, without it.
    if (local.available && local.allSaved()) window.location.reload()
    else conn.reconnect()
  })
  $('sign-out').addEventListener('click', async () => {
    // every copy kept here goes, other drafts' too: asked about all of them (signout.js)
    const question = signOutQuestion(user, {
      id: draftId,
      title: title.toString().trim(),
      unsent: conn.state.acked < conn.state.local || conn.state.refused,
      unsaved: keptHere()
    })
    if (question && !window.confirm(question)) return
    renewal.stop()
    conn.destroy()
    await local.destroy()
    forgetToken()
    await forgetLocal(user)
    window.location.href = `${ROOT}/`
  })

  // why this browser does not hold every change of the draft (for signout.js), or false; a
  // write under way is not a failure
  const keptHere = () => {
    if (!local.available) return 'this browser keeps no copy'
    const failure = local.failure()
    return failure ? (failure.full ? 'storage full' : 'storage error') : false
  }

  // leaving with changes that neither the server nor this browser holds: ask first
  window.addEventListener('beforeunload', (event) => {
    if (conn.atRisk()) {
      event.preventDefault()
      event.returnValue = ''
    }
  })

  let readOnlyShown = false
  let readOnlyNow = false
  let signedOutElsewhere = false
  let everSynced = false
  const setReadOnly = (value) => {
    // only on a change: a refresh may run inside an editor's update (typing notifies)
    if (value !== readOnlyNow) {
      readOnlyNow = value
      setTimeout(() => form.setReadOnly(readOnlyNow), 0)
    }
  }
  const refresh = () => {
    const open = openConflicts(conflictsMap)
    showStatus(conn.status(open.length))
    form.markConflicts(open)
    $('conflict-count').textContent = String(open.length)
    $('open-conflicts').classList.toggle('has-conflicts', open.length > 0)
    $('open-conflicts').classList.toggle('secondary', open.length === 0) // quiet when none
    const error = conn.state.error
    $('retry').hidden = !(error && error.code === 1009)
    if (signedOutElsewhere) {
      banner('You signed out in another tab: this page is closed for editing.')
      relink.hidden = true
      setReadOnly(true)
    } else if (error) {
      // one sentence per error: the server's reason only where it says more than ours, and
      // "kept" only where this browser holds work of this draft
      const kept = local.available && everSynced ? ' Your work is kept in this browser.' : ''
      const what = error.code === 1009
        ? ' Remove the large text, then press Retry.'
        : error.code === 4401 ? ' Paste a new link (or token) below to send it.' : ''
      banner(`${error.message}${saysMore(error.reason, error.message) ? ` (${error.reason})` : ''}${kept}${what}`)
      relink.hidden = error.code !== 4401
      // work may go on here where a new token or a smaller change lets it through
      setReadOnly(![1009, 4401].includes(error.code))
    } else if (conn.state.readOnly) {
      if (!readOnlyShown) banner('You can read this draft but not change it.', 'info')
      readOnlyShown = true
      setReadOnly(true)
    } else {
      if (relink.hidden) banner('')
      readOnlyShown = false // told again if a later socket is read-only
      setReadOnly(false)
    }
    // listed as kept here once it holds something of the draft (not for a refused stranger):
    // synced, loaded from this browser, or changed here. A draft first opened offline has only
    // its changes: listed (pending) from the first one, in the same update that IndexedDB
    // stores it, so the drafts list and its "Sign out" know of it before the user can leave.
    everSynced = everSynced || conn.provider.synced || local.loaded || conn.state.local > 0
    if (local.available && everSynced) local.remember(title.toString().trim(), conn.state.acked < conn.state.local || conn.state.refused)
  }
  conn.onChange(refresh)
  conflictsMap.observe(refresh)
  $('open-conflicts').addEventListener('click', conflicts.open)
  $('open-history').addEventListener('click', history.open)
  const synced = new Promise((resolve) => conn.onChange(() => { if (conn.provider.synced) resolve() }))
  setupSharing({ client: () => api(token), draftId, me: user, after: $('open-history'), synced })
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.querySelector('[data-role=close]').addEventListener('click', () => dialog.close())
  }
  refresh()
  conn.start()
  // for the browser tests and the curious: the live doc, its provider and the status name
  window.draftsync = {
    doc,
    provider: conn.provider,
    connection: conn.state,
    local: () => ({ available: local.available, allSaved: local.allSaved(), failure: local.failure() }),
    token: () => token,
    status: () => $('status').dataset.status
  }
}

/** Whether the server's close reason adds to our sentence (not "no access to this draft" again). */
function saysMore (reason, message) {
  const words = (text) => String(text || '').toLowerCase().replace(/[^a-z0-9 ]/g, ' ').split(/\s+/).filter(Boolean)
  const ours = new Set(words(message))
  return words(reason).some((word) => !ours.has(word))
}

main().catch((error) => {
  console.error(error)
  const banner = $('banner')
  banner.textContent = `The editor failed to start: ${error.message}`
  banner.hidden = false
})
