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
// An index in localStorage (per origin and user) lists the drafts kept here with their title,
// for the drafts list when the server cannot be reached. Signing out deletes the user's
// databases and index; another user's databases have other names and are never opened.
import { IndexeddbPersistence, fetchUpdates } from 'y-indexeddb'

const PREFIX = 'draftsync'
const STORE = 'updates' // y-indexeddb's object store of updates
const OPEN_TIMEOUT_MS = 5000

const userPrefix = (user) => `${PREFIX}:${encodeURIComponent(window.location.origin)}:${encodeURIComponent(user)}:`
const dbName = (user, draftId) => `${userPrefix(user)}${draftId}`
const indexKey = (user) => `${PREFIX}.local:${user}`

/** Whether this browser lets the page open an IndexedDB database (not in some private modes). */
async function probe () {
  if (typeof indexedDB === 'undefined' || indexedDB === null) return false
  return new Promise((resolve) => {
    let request
    try {
      request = indexedDB.open(`${PREFIX}-probe`)
    } catch {
      resolve(false)
      return
    }
    const timer = setTimeout(() => resolve(false), OPEN_TIMEOUT_MS)
    request.onsuccess = () => { clearTimeout(timer); request.result.close(); resolve(true) }
    request.onerror = () => { clearTimeout(timer); resolve(false) }
    request.onblocked = () => { clearTimeout(timer); resolve(false) }
  })
}

/**
 * Keep `doc` in IndexedDB; resolves once the stored copy is loaded into the doc.
 * Returns {available, allSaved(), onSaved(listener), remember(title, pending), destroy()}.
 */
export async function keepLocally ({ doc, user, draftId }) {
  const listeners = new Set()
  const unavailable = {
    available: false,
    loaded: false,
    allSaved: () => false,
    onSaved: (listener) => listeners.add(listener),
    remember: () => {},
    read: async () => undefined,
    write: () => {},
    catchUp: async () => {},
    destroy: () => {}
  }
  if (!(await probe())) return unavailable
  // ask the browser not to evict the copies under storage pressure (it may say no)
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {})
  let persistence
  try {
    persistence = new IndexeddbPersistence(dbName(user, draftId), doc)
  } catch {
    return unavailable
  }
  let written = 0 // updates of the doc so far (local, remote, loaded)
  let stored = 0 // the `written` IndexedDB has committed
  let loaded = false
  const confirm = () => {
    const target = written
    const db = persistence.db
    if (!db || !loaded) return
    try {
      const tx = db.transaction([STORE], 'readonly')
      tx.oncomplete = () => {
        if (target > stored) {
          stored = target
          for (const listener of listeners) listener()
        }
      }
    } catch {
      // the database is closing (sign out, page leaving)
    }
  }
  doc.on('update', (_update, origin) => {
    written += 1
    if (origin === persistence) {
      stored = Math.max(stored, written) // read from the database: it is there
      return
    }
    confirm()
  })
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, OPEN_TIMEOUT_MS)
    persistence.whenSynced.then(() => { clearTimeout(timer); resolve() })
  })
  loaded = persistence.synced
  if (!loaded) return unavailable
  confirm() // y-indexeddb stored the doc as it was when the database opened
  return {
    available: true,
    // the stored copy may hold changes the server lacks: unsent until the server says otherwise
    loaded: doc.store.clients.size > 0,
    allSaved: () => stored >= written,
    onSaved: (listener) => listeners.add(listener),
    remember: (title, pending) => rememberDraft(user, draftId, { title, pending }),
    /** Small page state kept with the copy (y-indexeddb's `custom` store), e.g. overrides.js. */
    read: (key) => persistence.get(key).catch(() => undefined),
    write: (key, value) => { persistence.set(key, value).catch(() => {}) },
    /** Take into the doc what other tabs of this draft stored since it was loaded. */
    catchUp: async () => {
      try {
        await fetchUpdates(persistence)
      } catch {
        // the database is closing (sign out, page leaving)
      }
    },
    destroy: () => persistence.destroy()
  }
}

function readIndex (user) {
  try {
    const parsed = JSON.parse(window.localStorage.getItem(indexKey(user)) || '{}')
    return parsed && typeof parsed === 'object' ? parsed : {}
  } catch {
    return {}
  }
}

function rememberDraft (user, draftId, { title, pending }) {
  const index = readIndex(user)
  const before = index[draftId]
  if (before && before.title === title && before.pending === pending) return
  index[draftId] = { title, pending, at: new Date().toISOString() }
  try {
    window.localStorage.setItem(indexKey(user), JSON.stringify(index))
  } catch {}
}

/** The drafts kept in this browser for `user`: [{id, title, pending, at}], newest first. */
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
