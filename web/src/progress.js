// Completion and word count, computed live from the doc the way the server does
// (crdt/metadata.py): words are runs of non-whitespace in the text and rich-text fields; a field
// is filled when a text has a non-blank character, a list has an item, a value as the schema's
// `filled` says ("moved": differs from its initial value; "set": holds a value, the initial one
// included; or a list of the values that count); completion is filled fields / schema fields.
import * as Y from 'yjs'

export function fragmentText (fragment) {
  const blocks = []
  const walk = (node) => {
    for (const child of node.toArray()) {
      if (child instanceof Y.XmlText) {
        blocks.push(child.toDelta().map((op) => (typeof op.insert === 'string' ? op.insert : '')).join(''))
      } else if (child instanceof Y.XmlElement) {
        walk(child)
      }
    }
  }
  walk(fragment)
  return blocks.join('\n')
}

function valueFilled (field, stored) {
  const filled = field.filled || 'set'
  let value = stored
  if (value === undefined || value === null || value === '') {
    if (filled === 'moved') return false
    value = field.initial
  }
  if (Array.isArray(filled)) return filled.includes(value)
  if (filled === 'moved') return value !== field.initial
  return value !== undefined && value !== null && value !== ''
}

export function measure (doc, schema) {
  const fields = doc.getMap('fields')
  let words = 0
  let filled = 0
  for (const field of schema.fields) {
    let isFilled = false
    if (field.kind === 'text' || field.kind === 'richtext') {
      const text = field.kind === 'text' ? doc.getText(field.name).toString() : fragmentText(doc.getXmlFragment(field.name))
      words += text.split(/\s+/).filter(Boolean).length
      isFilled = text.trim() !== ''
    } else if (field.kind === 'list') {
      isFilled = doc.getArray(field.name).length > 0
    } else {
      isFilled = valueFilled(field, fields.get(field.name))
    }
    if (isFilled) filled += 1
  }
  const total = schema.fields.length
  return { words, filled, total, completion: total ? Math.round((1000 * filled) / total) / 10 : 100 }
}

export function showProgress ({ doc, schema, bar, text }) {
  let pending = false
  const render = () => {
    pending = false
    const m = measure(doc, schema)
    bar.value = m.completion
    bar.setAttribute('aria-valuetext', `${Math.round(m.completion)}% complete`)
    const w = m.words === 1 ? 'word' : 'words'
    text.textContent = `${Math.round(m.completion)}% complete · ${m.filled} of ${m.total} fields · ${m.words} ${w}`
  }
  doc.on('update', () => {
    if (!pending) {
      pending = true
      setTimeout(render, 30) // once per burst of updates (rAF would stall in a hidden tab)
    }
  })
  render()
}
