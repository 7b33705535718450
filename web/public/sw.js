// The editor's service worker: keeps the app shell (the two pages, the bundle, the stylesheet,
// the schema) so that a reload without a connection opens the editor with the copy of the
// draft kept in this browser (IndexedDB), instead of the browser's "no internet" page.
//
// Network first, always: online, every answer comes from the server (a rebuilt bundle or a new
// schema is picked up at once) and refreshes the cached copy; only when the server cannot be
// reached is the cached copy served. Every editor page (/d/ID) is the same HTML, kept under one
// key. Nothing else is cached: the REST API and the WebSocket go to the network as they are.
// Mounted under a prefix (README, "Embedding in your app"), the worker is at /collab/sw.js: every
// path below starts with that root, taken from the worker's own address.
const ROOT = self.location.pathname.replace(/\/sw\.js$/, '')
const CACHE = 'draftsync-shell-v1'
const EDITOR_PAGE = `${ROOT}/d/`
const SHELL = ['/', '/static/editor.js', '/static/drafts.js', '/static/style.css'].map((p) => ROOT + p)
const DRAFT_PAGE = new RegExp(`^${ROOT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/d/[A-Za-z0-9_-]{1,128}$`)

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE)
    await cache.addAll(SHELL)
    // any editor page is the editor's HTML: fetch one to have it before the first reload
    const page = await fetch(`${ROOT}/d/offline-shell`, { credentials: 'same-origin' })
    if (page.ok) await cache.put(EDITOR_PAGE, page)
    await self.skipWaiting()
  })())
})

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name)
    await self.clients.claim()
  })())
})

self.addEventListener('fetch', (event) => {
  const request = event.request
  if (request.method !== 'GET') return
  const url = new URL(request.url)
  if (url.origin !== self.location.origin) return
  let key = null
  if (DRAFT_PAGE.test(url.pathname)) key = EDITOR_PAGE
  else if (url.pathname === `${ROOT}/`) key = `${ROOT}/`
  else if (url.pathname === `${ROOT}/api/schema`) key = `${ROOT}/api/schema`
  else if (SHELL.includes(url.pathname)) key = url.pathname
  if (key === null) return
  event.respondWith(networkFirst(request, key))
})

async function networkFirst (request, key) {
  const cache = await caches.open(CACHE)
  try {
    const response = await fetch(request)
    if (response.ok) await cache.put(key, response.clone())
    return response
  } catch (error) {
    const cached = await cache.match(key)
    if (cached) return cached
    throw error
  }
}
