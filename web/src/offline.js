// Registers the service worker (served at /sw.js, web/public/sw.js) that keeps the pages, the
// bundle and the schema, so that the editor opens without a connection. Not available (an
// old browser, a non-secure origin other than localhost): the page works online as before.
//
// `whenControlled(fetchAgain)`: on a first visit the page's own requests went out before the
// worker existed, so the worker has not seen them; once it takes control, the page asks again
// for what it needs offline (the schema), through the worker, which keeps the answer.
import { ROOT } from './root.js'

export function registerServiceWorker () {
  if (!('serviceWorker' in navigator)) return
  navigator.serviceWorker.register(`${ROOT}/sw.js`, { scope: `${ROOT}/` }).catch((error) => {
    console.warn(`offline use unavailable: ${error.message}`)
  })
}

export function whenControlled (fetchAgain) {
  if (!('serviceWorker' in navigator) || navigator.serviceWorker.controller) return
  navigator.serviceWorker.addEventListener('controllerchange', () => { fetchAgain() }, { once: true })
}
