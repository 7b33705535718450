// A list field (the root Y.Array named after it) as chips: each item with a remove button, and
// an input that adds one (Enter or the Add button). With the union rule a value already there is
// not added again; the server removes duplicates that concurrent writers add.
import { h, clear } from './dom.js'

export function tagsControl ({ field, yarray, id, guard }) {
  const list = h('ul', { class: 'chips', 'aria-label': `${field.name}: items` })
  const input = h('input', { id, type: 'text', autocomplete: 'off', enterkeyhint: 'done', placeholder: 'Add a tag' })
  const add = h('button', { type: 'button', class: 'secondary', 'aria-label': `Add to ${field.name}` }, 'Add')
  const commit = () => {
    const value = input.value.trim()
    if (!value) return
    if (guard && !guard.fits(field.name, value)) return
    if (field.rule !== 'union' || !yarray.toArray().includes(value)) yarray.push([value])
    input.value = ''
    input.focus()
  }
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault()
      commit()
    }
  })
  add.addEventListener('click', commit)

  let readOnly = false
  const remove = (value) => {
    yarray.doc.transact(() => {
      const items = yarray.toArray()
      for (let i = items.length - 1; i >= 0; i--) if (items[i] === value) yarray.delete(i, 1)
    })
  }
  const render = () => {
    const items = yarray.toArray()
    clear(list).append(...items.map((value) => h('li', { class: 'chip' },
      h('span', {}, String(value)),
      h('button', {
        type: 'button',
        class: 'chip-remove',
        'aria-label': `Remove ${value}`,
        disabled: readOnly,
        onclick: () => remove(value)
      }, '×'))))
    if (!items.length) list.append(h('li', { class: 'chips-empty' }, 'No tags yet'))
  }
  yarray.observe(render)
  render()
  return {
    element: h('div', { class: 'tags' }, list, h('div', { class: 'tag-add' }, input, add)),
    setReadOnly: (value) => {
      readOnly = value
      input.disabled = value
      add.disabled = value
      render()
    }
  }
}
