// CodeMirror 6 as an editor. Needs @codemirror/state and @codemirror/view (peer
// dependencies, resolved by your bundler). Usage:
//
//   const cm = codemirrorAdapter()
//   const view = new EditorView({ parent, extensions: [basicSetup, cm.extension] })
//   cm.attach(view); bindEditor(session, cm)

import { Annotation, StateEffect, StateField } from '@codemirror/state'
import { Decoration, EditorView, WidgetType } from '@codemirror/view'

const remote = Annotation.define()
const setPeers = StateEffect.define()

class Caret extends WidgetType {
  constructor (name, color) { super(); this.name = name; this.color = color }
  eq (o) { return o.name === this.name && o.color === this.color }
  toDOM () {
    const el = document.createElement('span')
    el.className = 'arena-cm-caret'
    el.style.cssText = `border-left:2px solid ${this.color};margin-left:-1px;position:relative`
    el.title = this.name
    return el
  }
}

const peersField = StateField.define({
  create: () => Decoration.none,
  update (decos, tr) {
    for (const e of tr.effects) if (e.is(setPeers)) return e.value
    return decos.map(tr.changes)
  },
  provide: (f) => EditorView.decorations.from(f)
})

export function codemirrorAdapter () {
  let view = null
  const local = new Set()
  const selection = new Set()
  const listener = EditorView.updateListener.of((u) => {
    if (u.docChanged && !u.transactions.some((t) => t.annotation(remote))) {
      const changes = []
      // fromB is where the change lands once the earlier ones are applied: splices in order.
      u.changes.iterChanges((fromA, toA, fromB, _toB, inserted) => {
        changes.push({ pos: fromB, delete: toA - fromA, insert: inserted.toString() })
      })
      for (const cb of local) cb(changes)
    }
    if (u.selectionSet || u.focusChanged) for (const cb of selection) cb(adapter.getSelection())
  })
  const adapter = {
    extension: [peersField, listener],
    attach (v) { view = v },
    getText: () => view.state.doc.toString(),
    getLength: () => view.state.doc.length,
    setText (text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text }, annotations: remote.of(true) })
    },
    applyRemote (changes) {
      for (const c of changes) {
        view.dispatch({ changes: { from: c.pos, to: c.pos + c.delete, insert: c.insert }, annotations: remote.of(true) })
      }
    },
    onLocalChange (cb) { local.add(cb); return () => local.delete(cb) },
    getSelection () {
      if (!view.hasFocus) return null
      const r = view.state.selection.main
      return { anchor: r.anchor, head: r.head }
    },
    onSelectionChange (cb) { selection.add(cb); return () => selection.delete(cb) },
    renderCursors (peers) {
      const len = view.state.doc.length
      const ranges = []
      for (const p of peers) {
        if (p.head == null || p.head > len) continue
        const color = /^#[0-9a-fA-F]{3,8}$/.test(p.color) ? p.color : '#888'
        const anchor = Math.min(p.anchor ?? p.head, len)
        const [from, to] = anchor < p.head ? [anchor, p.head] : [p.head, anchor]
        if (from < to) ranges.push(Decoration.mark({ attributes: { style: `background:${color}33`, title: p.name } }).range(from, to))
        ranges.push(Decoration.widget({ widget: new Caret(p.name, color), side: 1 }).range(p.head))
      }
      view.dispatch({ effects: setPeers.of(Decoration.set(ranges, true)) })
    },
    destroy () { local.clear(); selection.clear() }
  }
  return adapter
}
