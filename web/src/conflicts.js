// Open conflicts, live from the server-managed `conflicts` map (conflict id -> {field,
// candidates: [{value, user, client_id, at}], opened_at}). The dialog lists each with its
// candidates; choosing one asks the server to resolve it
// (POST /api/drafts/{id}/conflicts/{conflict_id}/resolve {value}), which writes the value and
// removes the entry for everyone.
import { h, clear, labelOf, when } from './dom.js'
import { explain } from './api.js'

export function openConflicts (conflictsMap) {
  const open = []
  conflictsMap.forEach((entry, id) => {
    if (entry && typeof entry === 'object') open.push({ id, ...entry })
  })
  return open.sort((a, b) => String(a.opened_at).localeCompare(String(b.opened_at)))
}

export function conflictsDialog ({ dialog, conflictsMap, client, draftId, canResolve }) {
  const body = dialog.querySelector('[data-role=conflict-list]')
  const message = dialog.querySelector('[data-role=conflict-message]')
  const say = (text) => { message.textContent = text }

  const resolve = async (conflict, candidate, button) => {
    button.disabled = true
    say(`Resolving ${labelOf(conflict.field)}…`)
    const path = `/api/drafts/${encodeURIComponent(draftId)}/conflicts/${encodeURIComponent(conflict.id)}/resolve`
    const answer = await client.post(path, { value: candidate.value })
    if (answer.ok) {
      say(`${labelOf(conflict.field)} set to ${display(candidate.value)}.`)
    } else {
      button.disabled = false
      say(explain(answer, 'Resolving a conflict'))
    }
  }

  const render = () => {
    const conflicts = openConflicts(conflictsMap)
    clear(body)
    if (!conflicts.length) {
      body.append(h('p', { class: 'empty' }, 'No open conflicts.'))
      return
    }
    for (const conflict of conflicts) {
      const candidates = Array.isArray(conflict.candidates) ? conflict.candidates : []
      body.append(h('section', { class: 'conflict', dataset: { conflict: conflict.id } },
        h('h3', {}, labelOf(String(conflict.field))),
        h('p', { class: 'meta' }, `Opened ${when(conflict.opened_at)}. Pick the value to keep:`),
        h('ul', { class: 'candidates' }, ...candidates.map((candidate) => h('li', {},
          h('button', {
            type: 'button',
            class: 'candidate',
            disabled: !canResolve(),
            onclick: (event) => resolve(conflict, candidate, event.currentTarget)
          },
          h('span', { class: 'candidate-value' }, display(candidate.value)),
          h('span', { class: 'candidate-who' }, `${candidate.user || 'unknown user'} · ${when(candidate.at)}`)))))))
    }
  }
  conflictsMap.observe(render)
  render()
  return {
    open: () => {
      say('')
      render()
      if (!dialog.open) dialog.showModal()
    },
    render
  }
}

function display (value) {
  if (value === null || value === undefined) return '(empty)'
  return typeof value === 'string' ? value : JSON.stringify(value)
}
