// A structured diff (GET /api/drafts/{id}/diff) as people read it: text with insertions and
// deletions marked inline (<ins>/<del>), rich text whose formatting changed marked "formatted"
// (the server's `format` ops, titled "made bold", "link removed", "paragraph → heading 2"),
// values as old → new with readable labels, list items added and removed as chips. Counts are
// the server's, in characters.
import { h, labelOf } from './dom.js'

/** "IN_REVIEW" → "In review"; numbers in the reader's locale; lists joined; empty said so. */
export function readable (value) {
  if (value === null || value === undefined || value === '') return '(empty)'
  if (typeof value === 'number') return value.toLocaleString()
  if (typeof value === 'boolean') return value ? 'Yes' : 'No'
  if (typeof value === 'string') {
    return /^[A-Z][A-Z0-9_]*$/.test(value) ? labelOf(value.toLowerCase()) : value
  }
  if (Array.isArray(value)) return value.map(readable).join(', ') || '(none)'
  return JSON.stringify(value)
}

export function chips (items, kind = '') {
  if (!items || !items.length) return h('span', { class: 'chips-empty' }, '(none)')
  return h('ul', { class: 'chips' }, ...items.map((item) => h('li', { class: `chip chip-static ${kind}` },
    kind === 'chip-added' ? '+ ' : kind === 'chip-removed' ? '− ' : '', readable(item))))
}

export function diffView (diff) {
  const changes = diff.changes || []
  if (!changes.length) return h('p', { class: 'empty' }, 'No differences.')
  return h('div', { class: 'diff' },
    diff.bounded
      ? h('p', { class: 'hint' }, 'A long text is compared line by line, or only part of its formatting changes is marked.')
      : null,
    ...changes.map((change) => h('section', { class: `diff-field diff-${change.kind}`, dataset: { field: change.field } },
      h('h4', {}, labelOf(change.field), change.kind === 'text' ? counts(change) : null),
      body(change))))
}

function counts (change) {
  const parts = []
  if (change.inserted) parts.push(`+${change.inserted}`)
  if (change.deleted) parts.push(`−${change.deleted}`)
  const unit = (n) => n === 1 ? 'character' : 'characters'
  let said = parts.length ? ` ${parts.join(' / ')} ${unit((change.inserted || 0) + (change.deleted || 0))}` : ''
  if (change.formatted) said += parts.length ? `, ${change.formatted} formatted` : ` ${change.formatted} ${unit(change.formatted)} formatted`
  return h('span', { class: 'diff-counts' }, said)
}

const MADE = { bold: 'made bold', italic: 'made italic', code: 'made code', link: 'link added' }
const MARK = { bold: 'bold', italic: 'italic', code: 'code', link: 'link' }
const words = (name) => name.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/_/g, ' ').toLowerCase()

/** "bulletList / listItem / paragraph" → "bullet list"; "heading 2" stays. */
function blockName (path) {
  let parts = String(path || 'text').split(' / ').map((part) => {
    const [tag, ...values] = part.split(' ')
    return tag === 'heading' && values.length ? `heading ${values[0]}` : tag
  }).filter((tag) => tag !== 'listItem')
  if (parts.length > 1 && parts[parts.length - 1] === 'paragraph') parts = parts.slice(0, -1)
  return parts.map(words).join(', ')
}

/** Whether a diff marks any formatting change (the legend then names the marker). */
export function hasFormatting (diff) {
  return (diff.changes || []).some((change) => change.formatted)
}

/** What a `format` op did, in words: "made bold, link removed". */
export function formatTitle (op) {
  const said = [
    ...(op.added || []).map((mark) => MADE[mark] || `${words(mark)} added`),
    ...(op.removed || []).map((mark) => `${MARK[mark] || words(mark)} removed`),
    ...(op.changed || []).map((mark) => `${MARK[mark] || words(mark)} changed`)
  ]
  if (op.block) said.push(`${blockName(op.block[0])} → ${blockName(op.block[1])}`)
  return said.join(', ') || 'formatting changed'
}

function formatted (op) {
  let inner = op.text
  const added = op.added || []
  if (added.includes('bold')) inner = h('strong', {}, inner)
  if (added.includes('italic')) inner = h('em', {}, inner)
  if (added.includes('code')) inner = h('code', {}, inner)
  const title = formatTitle(op)
  return h('span', { class: 'diff-formatted', title, dataset: { change: title } }, inner)
}

function body (change) {
  if (change.kind === 'text') {
    return h('p', { class: 'diff-text' }, ...(change.ops || []).map((op) => {
      if (op.op === 'insert') return h('ins', {}, op.text)
      if (op.op === 'delete') return h('del', {}, op.text)
      if (op.op === 'format') return formatted(op)
      return op.text
    }))
  }
  if (change.kind === 'list') {
    return h('div', { class: 'diff-list' },
      change.added && change.added.length ? h('div', {}, h('span', { class: 'diff-label' }, 'Added'), chips(change.added, 'chip-added')) : null,
      change.removed && change.removed.length ? h('div', {}, h('span', { class: 'diff-label' }, 'Removed'), chips(change.removed, 'chip-removed')) : null)
  }
  return h('p', { class: 'diff-value' },
    h('del', {}, readable(change.old)), ' → ', h('ins', {}, readable(change.new)))
}

/** The names of the fields a diff changes, for a sentence ("Title, Status and Tags"). */
export function changedNames (diff) {
  const names = (diff.changes || []).map((change) => labelOf(change.field))
  if (names.length < 2) return names.join('')
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`
}
