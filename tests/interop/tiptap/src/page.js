// A minimal Tiptap editor on draftsync's /hocuspocus, as a Tiptap app would write it: a stock
// HocuspocusProvider given only url, name and token, StarterKit (its own undo history off:
// Collaboration brings a Yjs one), Collaboration on the root Y.XmlFragment `body` and
// CollaborationCaret for the others' carets.
//
//   index.html?draft=DRAFT_ID&token=TOKEN&user=NAME[&url=ws://HOST:PORT/hocuspocus]
//
// (url: draftsync's endpoint; by default /hocuspocus on the page's own host)
//
// The page shows the provider's state in #status (data-status, data-synced, data-unsynced,
// data-auth: the scope or "failed", data-reason)
// and exposes `window.tiptap = { editor, provider }` for the test.
import { Editor } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import { HocuspocusProvider } from '@hocuspocus/provider'

const params = new URLSearchParams(window.location.search)
const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
const provider = new HocuspocusProvider({
  url: params.get('url') ?? `${scheme}://${window.location.host}/hocuspocus`,
  name: params.get('draft'),
  token: params.get('token')
})

const editor = new Editor({
  element: document.querySelector('#editor'),
  extensions: [
    StarterKit.configure({ undoRedo: false }),
    Collaboration.configure({ document: provider.document, field: 'body' }),
    CollaborationCaret.configure({
      provider,
      user: { name: params.get('user') ?? 'someone', color: '#d6336c' }
    })
  ]
})

const status = document.querySelector('#status')
let connection = 'connecting'
const show = () => {
  status.dataset.status = connection
  status.dataset.synced = String(provider.synced)
  status.dataset.unsynced = String(provider.hasUnsyncedChanges)
  status.textContent = `${connection}, ${provider.hasUnsyncedChanges ? 'saving…' : 'saved'}`
}
provider.on('status', ({ status: next }) => { connection = next; show() })
provider.on('synced', show)
provider.on('unsyncedChanges', show)
provider.on('authenticated', ({ scope }) => { status.dataset.auth = scope })
provider.on('authenticationFailed', ({ reason }) => {
  status.dataset.auth = 'failed'
  status.dataset.reason = reason
})
show()

window.tiptap = { editor, provider }
