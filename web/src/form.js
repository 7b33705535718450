// The draft form, built from the schema (GET /api/schema), one block a field:
//   text      CodeMirror on the root Y.Text (texteditor.js)
//   richtext  ProseMirror on the root Y.XmlFragment (richtext.js)
//   value     an input or select on the `fields` map (values.js)
//   list      chips on the root Y.Array (tags.js)
import { h, labelOf } from './dom.js'
import { textEditor } from './texteditor.js'
import { bindValue, valueControl } from './values.js'
import { tagsControl } from './tags.js'
import { richTextEditor } from './richtext.js'

export function buildForm ({ schema, doc, awareness, container, onConflict, guard }) {
  const fieldsMap = doc.getMap('fields')
  const renders = []
  const readOnlyToggles = []
  const badges = new Map() // field name -> conflict badge button

  for (const field of schema.fields) {
    const id = `field-${field.name}`
    const labelId = `${id}-label`
    const label = h('label', { id: labelId, for: id, class: 'field-label' }, labelOf(field.name))
    const block = h('div', { class: `field field-${field.kind}`, dataset: { field: field.name } })
    const head = h('div', { class: 'field-head' }, label)
    block.append(head)

    if (field.kind === 'text') {
      const parent = h('div', { class: 'text-input', id })
      const multiline = field.name !== 'title'
      const editor = textEditor({
        parent,
        ytext: doc.getText(field.name),
        awareness,
        labelId,
        multiline,
        hint: multiline ? `Write the ${labelOf(field.name).toLowerCase()}…` : labelOf(field.name),
        guard,
        field: field.name
      })
      label.removeAttribute('for') // a contenteditable is not labelable: focus it by hand
      label.addEventListener('click', () => editor.view.focus())
      block.append(parent)
      readOnlyToggles.push(editor.setReadOnly)
    } else if (field.kind === 'richtext') {
      const parent = h('div', { class: 'rich-input', id })
      const editor = richTextEditor({ parent, fragment: doc.getXmlFragment(field.name), awareness, labelId, guard, field: field.name })
      label.removeAttribute('for')
      label.addEventListener('click', () => editor.view.focus())
      block.append(editor.toolbar, parent)
      readOnlyToggles.push(editor.setReadOnly)
    } else if (field.kind === 'value') {
      const control = valueControl(field, id)
      const render = bindValue(field, control, fieldsMap, guard)
      renders.push(render)
      block.append(control)
      readOnlyToggles.push((readOnly) => { control.disabled = readOnly })
      if (field.rule === 'manual') {
        const badge = h('button', { type: 'button', class: 'badge-conflict', hidden: true, onclick: () => onConflict() }, 'Conflict')
        head.append(badge)
        badges.set(field.name, badge)
      }
    } else if (field.kind === 'list') {
      const tags = tagsControl({ field, yarray: doc.getArray(field.name), id, guard })
      block.append(tags.element)
      readOnlyToggles.push(tags.setReadOnly)
    }
    container.append(block)
  }

  fieldsMap.observe(() => renders.forEach((render) => render()))
  renders.forEach((render) => render())

  return {
    setReadOnly: (readOnly) => readOnlyToggles.forEach((toggle) => toggle(readOnly)),
    /** Mark the fields that have an open conflict. */
    markConflicts: (conflicts) => {
      const open = new Set(conflicts.map((c) => c.field))
      for (const [name, badge] of badges) {
        badge.hidden = !open.has(name)
        badge.setAttribute('aria-label', `${labelOf(name)} has a conflict: resolve it`)
      }
    }
  }
}
