// Completion and word count, computed live from the doc the way the server does
// (crdt/metadata.py): words are runs of non-whitespace in the text fields; a field is filled
// when a text has a non-blank character, a value is set to something but null or "", or a
// list has an item; completion is filled fields / schema fields.
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
      const value = fields.get(field.name)
      isFilled = value !== undefined && value !== null && value !== ''
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
