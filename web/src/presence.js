// Who is here: each editor's name and colour in awareness (`user`), which y-codemirror.next
// uses for remote cursors and selections, and a list of the people present.
import { h, clear } from './dom.js'

/** A stable colour per user name: the same person has the same colour in every tab. */
export function colourOf (name) {
  let hash = 0
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0
  const hue = hash % 360
  return { color: hslToHex(hue, 70, 40), colorLight: hslToHex(hue, 80, 88) }
}

function hslToHex (h, s, l) {
  s /= 100
  l /= 100
  const k = (n) => (n + h / 30) % 12
  const a = s * Math.min(l, 1 - l)
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)))
  const hex = (x) => Math.round(x * 255).toString(16).padStart(2, '0')
  return `#${hex(f(0))}${hex(f(8))}${hex(f(4))}`
}

export function announce (awareness, name) {
  awareness.setLocalStateField('user', { name, ...colourOf(name) })
}

/** Keep `list` (a <ul>) showing everyone in the draft, this tab first. */
export function showPresence (awareness, list) {
  const render = () => {
    const people = []
    for (const [clientId, state] of awareness.getStates()) {
      if (!state.user || !state.user.name) continue
      const me = clientId === awareness.clientID
      people.push({ me, ...state.user })
    }
    people.sort((a, b) => Number(b.me) - Number(a.me) || a.name.localeCompare(b.name))
    clear(list).append(...people.map((p) => h('li', { class: 'person', title: p.me ? `${p.name} (you)` : p.name },
      h('span', { class: 'dot', style: `background:${p.color}`, 'aria-hidden': 'true' }),
      p.me ? `${p.name} (you)` : p.name)))
  }
  awareness.on('change', render)
  render()
}
