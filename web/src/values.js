// Value fields: one key each of the root Y.Map `fields`, shown as the input its type asks for.
//   transition rule      a select of the states; moves the schema forbids from here are disabled
//   precedence rule      a select of the ranked values
//   integer / number     a number input          date  a date input (ISO yyyy-mm-dd)
//   boolean              a checkbox              string a text input
// A local change is written on `change` (Enter, blur, picking an option); remote changes show
// at once, except in the input someone is typing in.
import { h } from './dom.js'

export function valueControl (field, id) {
  const states = stateList(field)
  if (states.length) {
    const unset = h('option', { value: '', disabled: true, hidden: true }, '—')
    return h('select', { id }, unset, ...states.map((s) => h('option', { value: String(s) }, valueLabel(s))))
  }
  switch (field.type) {
    case 'integer': return h('input', { id, type: 'number', step: '1', inputmode: 'numeric' })
    case 'number': return h('input', { id, type: 'number', step: 'any', inputmode: 'decimal' })
    case 'date': return h('input', { id, type: 'date' })
    case 'boolean': return h('input', { id, type: 'checkbox' })
    default: return h('input', { id, type: 'text', autocomplete: 'off' })
  }
}

/** How a value reads: a schema's constant (CREATING, IN_REVIEW) as words ("Creating", "In
 * review"); anything else as it is. The stored value stays the schema's. */
export function valueLabel (value) {
  const text = String(value)
  // only a constant's shape: upper case with underscores, or at least 4 capitals (not "USA")
  if (!/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/.test(text) || !(text.includes('_') || /[A-Z]{4}/.test(text))) return text
  const words = text.toLowerCase().replace(/_/g, ' ')
  return words.charAt(0).toUpperCase() + words.slice(1)
}

function stateList (field) {
  if (field.rule === 'transition') {
    const seen = new Set(field.precedence || [])
    for (const [from, moves] of Object.entries(field.transitions || {})) {
      seen.add(from)
      moves.forEach((m) => seen.add(m))
    }
    return [...seen]
  }
  if (field.rule === 'precedence') return field.precedence || []
  return []
}

/** Bind `control` to `fields[field.name]`; returns render(), which shows the map's value. */
export function bindValue (field, control, fieldsMap, guard) {
  let typing = false
  // an unset key shows the schema's initial value: selected in a select (which must show
  // something), as the placeholder of an input (it is not the draft's value until written)
  const read = () => {
    const value = fieldsMap.get(field.name)
    if (value !== undefined && value !== null) return value
    return control.tagName === 'SELECT' ? field.initial ?? null : null
  }
  if (field.initial !== null && field.initial !== undefined && control.tagName === 'INPUT') {
    control.placeholder = String(field.initial)
  }
  const render = () => {
    const value = read()
    if (control.type === 'checkbox') {
      control.checked = value === true
    } else if (control.tagName === 'SELECT') {
      const allowed = field.rule === 'transition' ? allowedFrom(field, value) : null
      for (const option of control.options) {
        if (option.value === '') continue
        option.disabled = allowed !== null && option.value !== String(value) && !allowed.has(option.value)
      }
      control.value = value === null ? '' : String(value)
    } else if (!(typing && document.activeElement === control)) {
      control.value = value === null ? '' : field.type === 'date' ? String(value).slice(0, 10) : String(value)
    }
  }
  control.addEventListener('input', () => { typing = true })
  control.addEventListener('blur', () => { typing = false; render() })
  control.addEventListener('change', () => {
    typing = false
    const value = parse(field, control)
    if (value === undefined) return render() // not a value of this type: show what is stored
    if (guard && typeof value === 'string' && !guard.fits(field.name, value)) return render()
    fieldsMap.doc.transact(() => {
      if (value === null) fieldsMap.delete(field.name)
      else if (fieldsMap.get(field.name) !== value) fieldsMap.set(field.name, value)
    })
  })
  return render
}

function allowedFrom (field, value) {
  const moves = (field.transitions || {})[String(value)]
  return new Set((moves || []).map(String))
}

/** The typed value of the control; null clears the key; undefined means "not valid". */
function parse (field, control) {
  if (control.type === 'checkbox') return control.checked
  const raw = control.value.trim()
  if (raw === '') return null
  if (field.type === 'integer') {
    const n = Number(raw)
    return Number.isInteger(n) ? n : undefined
  }
  if (field.type === 'number') {
    const n = Number(raw)
    return Number.isFinite(n) ? n : undefined
  }
  return raw
}
