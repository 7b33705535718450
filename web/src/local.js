// The copy of each draft kept in this browser: the draft's Yjs document in IndexedDB
// (y-indexeddb), one database per server origin, user and draft, loaded before the socket
// syncs. Text typed offline survives a reload, a closed tab and a browser restart, and is sent
// when the connection is back (the sync step 2 carries everything the server lacks).
//
// Another tab of the same draft writes to the same database, and y-indexeddb reads it only
// when it opens: `catchUp()` reads what the others stored since (a tab closed offline keeps
// its text there), for the next sync to send it.
//
// `allSaved()` says whether IndexedDB holds every change made so far: y-indexeddb writes each
// update in its own readwrite transaction, and a readonly transaction on the same store opened
// after it completes only once that write has (IndexedDB runs overlapping transactions in the
// order they were created). The status says "saved in this browser" only then.
//
// That readonly transaction also completes when the write before it failed: its transaction
// aborted (QuotaExceededError: the origin's quota or the disk is full, …), and a full disk
// closes the connection too. The abort bubbles to the database, where it is heard; from then
// on the copy is not trusted to hold everything (which update is missing is not known, and
// y-indexeddb does not write it again): `allSaved()` is false and `failure()` says why. The
// page opens the database again (at the next change, or every RETRY_MS; it does not open
// while the disk is full), y-indexeddb's opening stores the whole doc, and a readonly
// transaction after it that completes with no failure heard meanwhile makes `allSaved()` true
// again. Failures of writes made before that transaction are heard before it completes
// (transactions are ordered); a later failure starts over.
//
// An index in localStorage (per origin and user) lists the drafts kept here with their title,
// for the drafts list when the server cannot be reached, and whether the copy here is known to
// hold everything: `unsaved` ('storage full', 'storage error') while `failure()` is set, so a
// tab closed then leaves the list saying the copy is not saved here. A line saying another tab's
// changes are not on the server is not this tab's to clear until it has read them from IndexedDB
// (it then sends them); otherwise a tab left open, in sync itself, called the copy clean and its
// "Sign out" deleted the other tab's work without asking. Signing out deletes the user's
// databases and index; another user's databases have other names and are never opened.
import * as Y from 'yjs'
import { IndexeddbPersistence, PREFERRED_TRIM_SIZE, fetchUpdates } from 'y-indexeddb'

const PREFIX = 'draftsync'
const STORE = 'updates' // y-indexeddb's object store of updates
const OPEN_TIMEOUT_MS = 5000
const RETRY_MS = 10000 // opening the database again after a failed write, while nothing changes

const userPrefix = (user) => `${PREFIX}:${encodeURIComponent(window.location.origin)}:${encodeURIComponent(user)}:`
const dbName = (user, draftId) => `${userPrefix(user)}${draftId}`
const indexKey = (user) => `${PREFIX}.local:${user}`
// this page, in the index's lines it writes: a line of another tab is not this tab's to clear
const TAB = Math.random().toString(36).slice(2, 10)
let marks = 0

/**
 * Whether this browser lets the page open IndexedDB database `name` (not in some private modes,
 * nor while a full disk keeps it shut). With `existing`, a database that does not exist (deleted
 * meanwhile: signed out in another tab) is not created.
 */
async function probe (name, { existing = false } = {}) {
  if (typeof indexedDB === 'undefined' || indexedDB === null) return false
  return new Promise((resolve) => {
    let request
    try {
      request = indexedDB.open(name)
    } catch {
      resolve(false)
      return
    }
    const timer = setTimeout(() => resolve(false), OPEN_TIMEOUT_MS)
    request.onupgradeneeded = () => { if (existing) request.transaction.abort() }
    request.onsuccess = () => { clearTimeout(timer); request.result.close(); resolve(true) }
    request.onerror = (event) => { event.preventDefault(); clearTimeout(timer); resolve(false) }
    request.onblocked = () => { clearTimeout(timer); resolve(false) }
  })
}

/**
 * Keep `doc` in IndexedDB; resolves once the stored copy is loaded into the doc.
 * Returns {available, allSaved(), failure(), onSaved(listener), remember(title, pending), destroy()};
 * the listeners are called whenever `allSaved()` or `failure()` may have changed.
 */
export async function keepLocally ({ doc, user, draftId }) {
  const listeners = new Set()
  const unavailable = {
    available: false,
    loaded: false,
    storedUpdates: () => null,
    allSaved: () => false,
    failure: () => null,
    onSaved: (listener) => listeners.add(listener),
    remember: () => {},
    read: async () => undefined,
    write: () => {},
    catchUp: async () => {},
    destroy: () => {}
  }
  if (!(await probe(`${PREFIX}-probe`))) return unavailable
  // ask the browser not to evict the copies under storage pressure (it may say no)
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {})
  const name = dbName(user, draftId)
  let persistence
  let written = 0 // updates of the doc so far (local, remote, loaded)
  let stored = 0 // the `written` IndexedDB has committed
  let loaded = false
  let failed = null // {name, message, full}: a write failed, the whole doc not stored since
  let failures = 0 // writes failed so far
  let reopening = false
  let retryTimer = null
  let closed = false // destroyed: sign out, or signed out in another tab
  const notify = () => { for (const listener of listeners) listener() }

  const fail = (which, error) => {
    // a connection replaced already: the one opened since stored the whole doc
    if (which !== persistence || which._destroyed || closed) return
    failures += 1
    const name = (error && error.name) || 'UnknownError'
    const message = (error && error.message) || ''
    // a full quota, or a full disk (Chromium: QuotaExceededError at commit, or an UnknownError
    // "IO error … FILE_ERROR_NO_SPACE" from its LevelDB once the commit was under way)
    const full = name === 'QuotaExceededError' || /NO_SPACE|disk full|ENOSPC/i.test(message)
    failed = { name, message, full }
    // its connection may be closing (a disk-full commit closes it): y-indexeddb's writes through
    // it would throw, and a later write there would not bring back the one lost anyway
    which.destroy()
    if (retryTimer === null) retryTimer = setInterval(reopen, RETRY_MS)
    notify()
  }
  const open = () => {
    const opened = new IndexeddbPersistence(name, doc)
    // its writes are made by our update handler below (`write`), in order with the
    // confirmations, and without letting an exception (a closing connection) stop the doc's
    // other update handlers
    doc.off('update', opened._storeUpdate)
    opened._db.then((db) => {
      // a failed transaction (a write refused: quota or disk full, …) aborts; the abort bubbles
      // to the database, heard from its opening on (the first write stores the whole doc)
      db.addEventListener('abort', (event) => {
        const tx = event.target // an abort is fired at its transaction
        if (tx instanceof IDBTransaction && tx.mode !== 'readonly' && tx.objectStoreNames.contains(STORE)) {
          fail(opened, tx.error)
        }
      })
      db.addEventListener('close', () => fail(opened, null)) // closed by the browser
    }, () => {})
    return opened
  }
  // y-indexeddb's `_storeUpdate`, minus its promise that nobody handles: a failed write
  // aborts its transaction, heard by the database's listener above
  const write = (current, update, origin) => {
    if (!current.db || origin === current) return
    current.db.transaction([STORE], 'readwrite').objectStore(STORE).add(update)
    if (++current._dbsize >= PREFERRED_TRIM_SIZE) {
      // y-indexeddb merges the updates into one now and then (debounced)
      clearTimeout(current._storeTimeoutId)
      current._storeTimeoutId = setTimeout(() => {
        current._storeTimeoutId = null
        if (!current._destroyed) merge(current)
      }, current._storeTimeout)
    }
  }
  // y-indexeddb's `storeState(current, false)` (the merge of the stored updates into one), minus
  // its inner promise that nobody handles: on a full disk its transaction aborts half-way, its
  // remaining requests reject, and that rejection went unhandled. Here every step is awaited
  // and a failure goes to `fail`, with the transaction's own error (the cause: disk full, …)
  // rather than the AbortError of the request it cut short.
  const merge = async (current) => {
    let store = null
    try {
      store = await fetchUpdates(current)
      if (current._destroyed || current._dbsize < PREFERRED_TRIM_SIZE) return
      await request(store.add(Y.encodeStateAsUpdate(current.doc)))
      await request(store.delete(IDBKeyRange.upperBound(current._dbref, true)))
      current._dbsize = await request(store.count())
    } catch (error) {
      const cause = store && store.transaction.error
      // fetchUpdates' requests cut short by an abort: the abort, heard by the database's
      // listener, carries the cause
      if (!cause && isAbort(error)) return
      fail(current, cause || error)
    }
  }
  const confirm = () => {
    const target = written
    const seen = failures
    const current = persistence
    const db = current.db
    if (!db || !loaded || current._destroyed) return
    try {
      const tx = db.transaction([STORE], 'readonly')
      tx.oncomplete = () => {
        // every write before it committed: they hold everything up to `target` (after a
        // failure, on a connection opened since, whose first write stored the whole doc)
        if (failures !== seen || current !== persistence || current._destroyed) return
        const recovered = failed !== null
        failed = null
        if (recovered) {
          clearInterval(retryTimer)
          retryTimer = null
        }
        if (target > stored || recovered) {
          stored = Math.max(stored, target)
          notify()
        }
      }
    } catch {
      // the database is closing (sign out, page leaving, a failed write)
    }
  }
  // After a failed write: open the database again, when it opens (a full disk keeps it shut).
  // y-indexeddb stores the whole doc when it opens; the confirmation after it says whether it did.
  const reopen = async () => {
    if (!failed || reopening || closed) return
    reopening = true
    try {
      if (!(await probe(name, { existing: true }))) return // y-indexeddb leaves a failed open unhandled
      if (closed) return
      persistence = open()
      await synced(persistence)
      if (persistence.synced) confirm()
      else persistence.destroy() // failed, or too slow: the next attempt opens another
    } finally {
      reopening = false
    }
  }

  try {
    persistence = open()
  } catch {
    return unavailable
  }
  doc.on('update', (update, origin) => {
    written += 1
    const current = persistence
    if (!current._destroyed) {
      try {
        write(current, update, origin)
      } catch (error) {
        fail(current, error)
      }
    }
    if (origin === current) {
      // read from the database: it is there (not what a failed write lost, though)
      if (!failed) stored = Math.max(stored, written)
      return
    }
    if (failed) reopen()
    confirm()
  })
  // y-indexeddb's opening write (the whole doc) leaves its promise unhandled: when it fails
  // (the disk still full), the status says so
  window.addEventListener('unhandledrejection', (event) => {
    const reason = event.reason
    if (failed && reason instanceof Error && /^(AbortError|QuotaExceededError|UnknownError|InvalidStateError)\b/.test(reason.message)) {
      event.preventDefault()
    }
  })
  await synced(persistence)
  loaded = persistence.synced
  if (!loaded) {
    closed = true // no retries for a copy the page does not use
    clearInterval(retryTimer)
    return unavailable
  }
  confirm() // y-indexeddb stored the doc as it was when the database opened
  // the changes the copy was loaded from, one by one as stored: what was typed offline before a
  // reload may add up to more than the server takes in one message, each change alone does not
  const storedUpdates = doc.store.clients.size > 0 ? await readStored(persistence) : null
  // true once read; false when the database is closing (sign out, page leaving, a failed write)
  const catchUp = async () => {
    const current = persistence
    if (current._destroyed || !current.db) return false
    try {
      await fetchUpdates(current)
      return !current._destroyed
    } catch {
      return false
    }
  }
  // Another tab listed changes of this draft that the server lacks (a tab whose socket never got
  // through, closed since): its line stays until this tab has read what that tab stored, after
  // it wrote the line (its write to IndexedDB came first). Those changes are then this tab's
  // to send, counted in its own `pending`; listeners hear that the line may be written again.
  let caughtUp = null
  let catchingUp = null
  const catchUpWith = async (mark) => {
    catchingUp = mark
    const read = await catchUp()
    if (catchingUp !== mark || closed) return
    catchingUp = null // not read: tried again at the next change
    if (!read) return
    caughtUp = mark
    notify()
  }
  return {
    available: true,
    // the stored copy may hold changes the server lacks: unsent until the server says otherwise
    loaded: doc.store.clients.size > 0,
    /** The stored updates the doc was loaded from (null: unknown, or nothing stored). */
    storedUpdates: () => storedUpdates,
    allSaved: () => !failed && stored >= written,
    /** Why a write to IndexedDB failed ({name, message, full}), until the whole doc is stored again. */
    failure: () => failed,
    onSaved: (listener) => listeners.add(listener),
    /** List the draft in the index: its title, whether changes are unsent, whether a write failed. */
    remember: (title, pending) => {
      const held = rememberDraft(user, draftId, { title, pending, unsaved: unsavedBecause(failed), caughtUp })
      if (held !== null && catchingUp !== held) catchUpWith(held)
    },
    /** Small page state kept with the copy (y-indexeddb's `custom` store), e.g. overrides.js. */
    read: (key) => persistence.get(key).catch(() => undefined),
    write: (key, value) => { persistence.set(key, value).catch(() => {}) },
    /** Take into the doc what other tabs of this draft stored since it was loaded. */
    catchUp,
    destroy: () => {
      closed = true
      clearInterval(retryTimer)
      retryTimer = null
      return persistence.destroy()
    }
  }
}

/** The result of an IndexedDB request, or its error. */
function request (req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error) // not prevented: the transaction aborts, all or nothing
  })
}

/** The updates y-indexeddb holds (each change one, until it merges them), or null if unread. */
async function readStored (persistence) {
  try {
    const updates = await request(persistence.db.transaction([STORE], 'readonly').objectStore(STORE).getAll())
    return updates.length ? updates : null
  } catch {
    return null
  }
}

/** Whether `error` is a request cut short by its transaction's abort (lib0 wraps it in an Error). */
function isAbort (error) {
  return Boolean(error) && (error.name === 'AbortError' || /^AbortError\b/.test(error.message || ''))
}

/** Until y-indexeddb has loaded the stored copy into the doc (or OPEN_TIMEOUT_MS). */
function synced (persistence) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, OPEN_TIMEOUT_MS)
    persistence.whenSynced.then(() => { clearTimeout(timer); resolve() })
  })
}

function readIndex (user) {
  try {
    const parsed = JSON.parse(window.localStorage.getItem(indexKey(user)) || '{}')
    return parsed && typeof parsed === 'object' ? parsed : {}
  } catch {
    return {}
  }
}

/** Why the copy kept here lacks some changes (a failed write: `failure()`), or false. */
function unsavedBecause (failure) {
  if (!failure) return false
  return failure.full ? 'storage full' : 'storage error'
}

/**
 * Write the draft's line in the index. A line another tab wrote saying its changes are not on the
 * server (`pending`, its `mark`) is neither cleared nor replaced by this tab unless this tab has
 * read IndexedDB since (`caughtUp` is that mark): its doc then holds those changes, and its own
 * `pending` counts them. Returns the mark this tab must catch up with first, or null.
 */
function rememberDraft (user, draftId, { title, pending, unsaved, caughtUp }) {
  const index = readIndex(user)
  const before = index[draftId]
  // a line of an older page has no mark: its time stands for one
  const theirs = before && before.pending && before.by !== TAB ? String(before.mark || before.at) : null
  const held = theirs !== null && theirs !== caughtUp ? theirs : null
  const same = before && before.title === title && (before.unsaved || false) === unsaved
  if (held !== null) {
    if (same) return held
    index[draftId] = { ...before, title, unsaved } // still pending, still the other tab's
  } else {
    if (same && before.pending === pending) return null
    index[draftId] = { title, pending, unsaved, by: TAB, mark: pending ? `${TAB}.${++marks}` : null, at: new Date().toISOString() }
  }
  try {
    window.localStorage.setItem(indexKey(user), JSON.stringify(index))
  } catch {}
  return held
}

/**
 * The drafts kept in this browser for `user`: [{id, title, pending, unsaved, at}], newest first;
 * `unsaved` says why the copy lacks some changes ('storage full', …), false when it holds all.
 */
export function localDrafts (user) {
  return Object.entries(readIndex(user))
    .map(([id, entry]) => ({ id, ...entry }))
    .sort((a, b) => String(b.at).localeCompare(String(a.at)))
}

/** Delete every copy kept for `user` (sign out). */
export async function forgetLocal (user) {
  const ids = Object.keys(readIndex(user))
  try {
    window.localStorage.removeItem(indexKey(user))
  } catch {}
  if (typeof indexedDB === 'undefined' || indexedDB === null) return
  const names = new Set(ids.map((id) => dbName(user, id)))
  if (typeof indexedDB.databases === 'function') {
    for (const { name } of await indexedDB.databases()) {
      if (name && name.startsWith(userPrefix(user))) names.add(name)
    }
  }
  await Promise.all([...names].map((name) => new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name)
    request.onsuccess = request.onerror = request.onblocked = () => resolve()
  })))
}
