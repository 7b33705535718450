// A rich-text field: ProseMirror bound to the field's root Y.XmlFragment by y-prosemirror
// (ySyncPlugin), with the others' cursors and names (yCursorPlugin, on the awareness the page
// already shares: each binding reads only the cursors that fall inside its own fragment), a Yjs
// undo history (yUndoPlugin: undoes only this person's edits), marks (bold, italic, link),
// headings and lists, keyboard shortcuts and a small toolbar.
//
// Node and mark names are Tiptap's (paragraph, heading, bulletList, orderedList, listItem,
// bold, italic, link, ...), with the specs of prosemirror-schema-basic and -list: a Tiptap
// editor with its Collaboration extension on the same field reads and writes the same
// fragment. (y-prosemirror drops elements its schema does not know, so the names matter.)
import { DOMSerializer, Schema } from 'prosemirror-model'
import { nodes as basicNodes, marks as basicMarks } from 'prosemirror-schema-basic'
import { bulletList, listItem, orderedList, liftListItem, sinkListItem, splitListItem, wrapInList } from 'prosemirror-schema-list'
import { EditorState, Plugin } from 'prosemirror-state'
import { EditorView } from 'prosemirror-view'
import { keymap } from 'prosemirror-keymap'
import { baseKeymap, setBlockType, toggleMark } from 'prosemirror-commands'
import { redo, undo, yCursorPlugin, ySyncPlugin, ySyncPluginKey, yUndoPlugin } from 'y-prosemirror'
import { h } from './dom.js'

export const richSchema = new Schema({
  nodes: {
    doc: basicNodes.doc,
    paragraph: basicNodes.paragraph,
    heading: basicNodes.heading,
    blockquote: basicNodes.blockquote,
    codeBlock: basicNodes.code_block,
    horizontalRule: basicNodes.horizontal_rule,
    text: basicNodes.text,
    hardBreak: basicNodes.hard_break,
    bulletList: { ...bulletList, content: 'listItem+', group: 'block' },
    orderedList: { ...orderedList, content: 'listItem+', group: 'block' },
    listItem: { ...listItem, content: 'paragraph block*' }
  },
  marks: {
    bold: basicMarks.strong,
    italic: basicMarks.em,
    link: basicMarks.link,
    code: basicMarks.code
  }
})

const { nodes, marks } = richSchema

const markActive = (state, type) => {
  const { from, $from, to, empty } = state.selection
  if (empty) return Boolean(type.isInSet(state.storedMarks || $from.marks()))
  return state.doc.rangeHasMark(from, to, type)
}

const toggleLink = (state, dispatch) => {
  if (markActive(state, marks.link)) return toggleMark(marks.link)(state, dispatch)
  if (state.selection.empty) return false
  if (!dispatch) return true
  const href = window.prompt('Link to (https://…)', 'https://')
  if (!href || !/^(https?:|mailto:)/i.test(href.trim())) return true
  return toggleMark(marks.link, { href: href.trim() })(state, dispatch)
}

const heading = (level) => (state, dispatch) => {
  const { $from } = state.selection
  const isIt = $from.parent.type === nodes.heading && $from.parent.attrs.level === level
  return setBlockType(isIt ? nodes.paragraph : nodes.heading, isIt ? {} : { level })(state, dispatch)
}

const inList = (state, type) => {
  const { $from } = state.selection
  for (let depth = $from.depth; depth > 0; depth--) {
    const node = $from.node(depth)
    if (node.type === nodes.bulletList || node.type === nodes.orderedList) return node.type === type
  }
  return false
}

const toggleList = (type) => (state, dispatch) =>
  inList(state, type) ? liftListItem(nodes.listItem)(state, dispatch) : wrapInList(type)(state, dispatch)

const TOOLS = [
  { name: 'bold', label: 'B', title: 'Bold (Ctrl+B)', run: toggleMark(marks.bold), active: (s) => markActive(s, marks.bold) },
  { name: 'italic', label: 'I', title: 'Italic (Ctrl+I)', run: toggleMark(marks.italic), active: (s) => markActive(s, marks.italic) },
  { name: 'link', label: 'Link', title: 'Link (Ctrl+K)', run: toggleLink, active: (s) => markActive(s, marks.link) },
  { name: 'heading', label: 'H', title: 'Heading (Ctrl+Alt+1)', run: heading(2), active: (s) => s.selection.$from.parent.type === nodes.heading },
  { name: 'bullet-list', label: '• List', title: 'Bulleted list (Ctrl+Shift+8)', run: toggleList(nodes.bulletList), active: (s) => inList(s, nodes.bulletList) },
  { name: 'ordered-list', label: '1. List', title: 'Numbered list (Ctrl+Shift+7)', run: toggleList(nodes.orderedList), active: (s) => inList(s, nodes.orderedList) }
]

const richKeymap = {
  'Mod-z': undo,
  'Mod-y': redo,
  'Mod-Shift-z': redo,
  'Mod-b': toggleMark(marks.bold),
  'Mod-i': toggleMark(marks.italic),
  'Mod-k': toggleLink,
  'Mod-Alt-1': heading(1),
  'Mod-Alt-2': heading(2),
  'Mod-Alt-0': setBlockType(nodes.paragraph),
  'Mod-Shift-8': toggleList(nodes.bulletList),
  'Mod-Shift-7': toggleList(nodes.orderedList),
  Enter: splitListItem(nodes.listItem),
  Tab: sinkListItem(nodes.listItem),
  'Shift-Tab': liftListItem(nodes.listItem)
}

/** Refuse a typed or pasted change whose text the server would not take (limits.js); the
 * changes y-prosemirror makes from remote updates are never refused. */
const sizeFilter = (guard, field) => new Plugin({
  filterTransaction: (tr) => {
    if (!guard || !tr.docChanged || tr.getMeta(ySyncPluginKey)) return true
    let inserted = ''
    for (const step of tr.steps) {
      const slice = step.slice
      if (slice && slice.content.size) inserted += slice.content.textBetween(0, slice.content.size, '\n', ' ')
    }
    return !inserted || guard.fits(field, inserted)
  }
})

// the cursor of another person: a caret in their colour with their name above it
const cursorBuilder = (user) => {
  const caret = h('span', { class: 'rich-caret', style: `border-color:${user.color}` })
  caret.append(h('span', { class: 'rich-caret-name', style: `background:${user.color}` }, user.name))
  return caret
}
const selectionBuilder = (user) => ({ style: `background-color:${user.colorLight || `${user.color}33`}`, class: 'rich-selection' })

export function richTextEditor ({ parent, fragment, awareness, labelId, guard, field }) {
  let editable = true
  const toolbar = h('div', { class: 'rich-toolbar', role: 'toolbar', 'aria-label': 'Formatting', 'aria-controls': parent.id })
  const buttons = TOOLS.map((tool) => {
    const button = h('button', {
      type: 'button',
      class: `secondary rich-tool rich-${tool.name}`,
      title: tool.title,
      'aria-label': tool.title.replace(/ \(.*\)$/, ''),
      'aria-pressed': 'false',
      dataset: { tool: tool.name },
      // keep the editor's selection: the toolbar acts on it
      onmousedown: (event) => event.preventDefault(),
      onclick: () => {
        tool.run(view.state, view.dispatch)
        view.focus()
      }
    }, tool.label)
    return { tool, button }
  })
  toolbar.append(...buttons.map((b) => b.button))
  const showTools = (state) => {
    for (const { tool, button } of buttons) {
      button.setAttribute('aria-pressed', String(Boolean(tool.active(state))))
      button.disabled = !editable || !tool.run(state)
    }
  }

  const view = new EditorView(parent, {
    state: EditorState.create({
      schema: richSchema,
      plugins: [
        ySyncPlugin(fragment),
        yCursorPlugin(awareness, { cursorBuilder, selectionBuilder }),
        yUndoPlugin(),
        sizeFilter(guard, field),
        keymap(richKeymap),
        keymap(baseKeymap)
      ]
    }),
    editable: () => editable,
    attributes: {
      role: 'textbox',
      'aria-multiline': 'true',
      'aria-labelledby': labelId,
      class: 'rich-content'
    },
    dispatchTransaction (tr) {
      // `this`: y-prosemirror dispatches while the view is being constructed
      this.updateState(this.state.apply(tr))
      showTools(this.state)
    }
  })
  showTools(view.state)
  return {
    view,
    toolbar,
    setReadOnly: (readOnly) => {
      editable = !readOnly
      view.setProps({}) // re-reads `editable`
      showTools(view.state)
    }
  }
}

/** A version's rich-text field (GET …/versions/{v} `richtext[name]`: blocks {type, attrs,
 * content}, texts as [insert, marks] runs) as formatted, read-only DOM for the history preview;
 * null if it does not fit this schema (the caller shows the plain text then). */
export function richPreview (blocks) {
  const toJSON = (data) => {
    if (Array.isArray(data)) {
      return data.filter(([insert]) => typeof insert === 'string' && insert).map(([insert, attrs]) => ({
        type: 'text',
        text: insert,
        marks: Object.entries(attrs || {}).filter(([name]) => marks[name]).map(([type, value]) => ({ type, attrs: value || {} }))
      }))
    }
    return [{ type: data.type, attrs: data.attrs, content: data.content.flatMap(toJSON) }]
  }
  try {
    const doc = richSchema.nodeFromJSON({ type: 'doc', content: (blocks || []).flatMap(toJSON) })
    doc.check()
    const box = h('div', { class: 'rich-preview' })
    box.append(DOMSerializer.fromSchema(richSchema).serializeFragment(doc.content))
    return box
  } catch {
    return null
  }
}
