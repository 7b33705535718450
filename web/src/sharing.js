// Sharing in the editor: the owner's Share dialog. Everyone with access and their role
// (GET /api/drafts/{id}/access, owners only), an invitation by name as editor or viewer, a role
// changed or removed (PUT /api/drafts/{id}/access): the server applies it to the person's open
// pages at once (a viewer's page turns read-only, a removed person's page closes) and their
// drafts list shows or drops the draft (the drafts feed). Only owners see the Share button: the
// access list answers 403 to anyone else.
import { explain } from './api.js'
import { h, clear } from './dom.js'

const ROLES = [['owner', 'Owner'], ['editor', 'Editor'], ['viewer', 'Viewer']]

function roleSelect (value, label, onchange) {
  return h('select', { 'aria-label': label, onchange },
    ...ROLES.map(([role, name]) => h('option', { value: role, selected: role === value }, name)))
}

/**
 * Adds the Share button next to `after` (owners only) and its dialog. A new draft is created by
 * the page's first connection, which may come after the first look at the access list (404):
 * then it looks again once `synced` (the first sync) resolves.
 */
export async function setupSharing ({ client, draftId, me, after, synced }) {
  const path = `/api/drafts/${encodeURIComponent(draftId)}/access`
  let first = await client().get(path)
  if (first.status === 404 && synced) {
    await synced
    first = await client().get(path)
  }
  if (!first.ok) return // not an owner (403), or no such endpoint: no button

  const message = h('p', { role: 'status', 'aria-live': 'polite', class: 'message', dataset: { role: 'share-message' } })
  const people = h('ul', { class: 'access-list', dataset: { role: 'access-list' } })
  const name = h('input', { id: 'share-user', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'who to invite' })
  const role = h('select', { id: 'share-role', 'aria-label': 'Role for the invited person' },
    h('option', { value: 'editor' }, 'Editor'), h('option', { value: 'viewer' }, 'Viewer'))
  const say = (text) => { message.textContent = text }

  const change = async (user, newRole, done) => {
    const answer = await client().put(path, { user, role: newRole })
    if (!answer.ok) {
      say(answer.status === 409 ? 'The draft needs an owner: make someone else an owner first.' : explain(answer, 'Changing access'))
    } else {
      say(done)
    }
    await show()
  }

  const show = async (answer) => {
    answer = answer || await client().get(path)
    if (!answer.ok) return say(explain(answer, 'Reading who has access'))
    clear(people)
    for (const entry of answer.body.items) {
      const who = entry.user === me ? `${entry.user} (you)` : entry.user
      people.append(h('li', { class: 'access', dataset: { user: entry.user, role: entry.role } },
        h('span', { class: 'access-user' }, who),
        roleSelect(entry.role, `Role of ${entry.user}`, (event) =>
          change(entry.user, event.target.value, `${entry.user} is now ${event.target.value}.`)),
        h('button', {
          type: 'button',
          class: 'secondary',
          'aria-label': `Remove ${entry.user}`,
          onclick: () => change(entry.user, 'none', `${entry.user} no longer has access.`)
        }, 'Remove')))
    }
  }

  const invite = h('form', {
    class: 'inline-form invite',
    dataset: { role: 'invite' },
    onsubmit: async (event) => {
      event.preventDefault()
      const user = name.value.trim()
      if (!user) return say('Type the name of the person to invite.')
      name.value = ''
      await change(user, role.value, `${user} is invited as ${role.value}.`)
    }
  }, h('label', { for: 'share-user' }, 'User name'), name, role, h('button', { type: 'submit' }, 'Invite'))

  const close = h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, 'Close')
  const dialog = h('dialog', { 'aria-labelledby': 'share-title', dataset: { role: 'share' } },
    h('div', { class: 'dialog-head' }, h('h2', { id: 'share-title' }, 'Share'), close),
    h('p', { class: 'hint' }, 'Editors change the draft, viewers read it. A change applies at once to their open pages.'),
    invite,
    h('h3', {}, 'People with access'),
    people,
    message)
  document.body.append(dialog)
  const button = h('button', {
    type: 'button',
    class: 'secondary',
    dataset: { role: 'open-share' },
    onclick: async () => {
      say('')
      dialog.showModal()
      await show()
    }
  }, 'Share')
  after.after(button)
  await show(first)
}
