// A text field: CodeMirror 6 bound to the field's root Y.Text by y-codemirror.next, which
// also shows the cursors and selections of the others (from awareness, with names and colours).
import { Compartment, EditorState } from '@codemirror/state'
import { EditorView, keymap, placeholder, drawSelection } from '@codemirror/view'
import { defaultKeymap } from '@codemirror/commands'
import * as Y from 'yjs'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'

// One-line fields: Enter does nothing and pasted line breaks become spaces.
const singleLine = [
  keymap.of([{ key: 'Enter', run: () => true }]),
  EditorState.transactionFilter.of((tr) => {
    if (!tr.docChanged || !tr.isUserEvent('input')) return tr
    let multi = false
    tr.changes.iterChanges((_a, _b, _c, _d, inserted) => { if (inserted.lines > 1) multi = true })
    if (!multi) return tr
    const changes = []
    tr.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
      changes.push({ from: fromA, to: toA, insert: inserted.toString().replace(/\n/g, ' ') })
    })
    return { changes, selection: tr.selection } // same length: the selection still fits
  })
]

/** Refuse a typed, pasted or dropped change whose text the server would not take (limits.js):
 * the change never enters the doc, so nothing is sent. */
const sizeFilter = (guard, field) => EditorState.changeFilter.of((tr) => {
  if (!guard || !tr.isUserEvent('input')) return true
  let inserted = ''
  tr.changes.iterChanges((_a, _b, _c, _d, text) => { inserted += text.toString() })
  return guard.fits(field, inserted)
})

export function textEditor ({ parent, ytext, awareness, labelId, multiline, hint, guard, field }) {
  const undoManager = new Y.UndoManager(ytext)
  const editable = new Compartment()
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap]),
        drawSelection(),
        EditorView.lineWrapping, // a long title wraps too: no sideways scroll on a phone
        multiline ? [] : singleLine,
        sizeFilter(guard, field),
        placeholder(hint),
        editable.of(EditorView.editable.of(true)),
        EditorView.contentAttributes.of({
          'aria-labelledby': labelId,
          'aria-multiline': multiline ? 'true' : 'false',
          role: 'textbox'
        }),
        yCollab(ytext, awareness, { undoManager })
      ]
    })
  })
  return {
    view,
    setReadOnly: (readOnly) => view.dispatch({
      effects: editable.reconfigure(EditorView.editable.of(!readOnly))
    })
  }
}
