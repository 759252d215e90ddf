// Monaco as an editor. Pass the editor instance and the `monaco` namespace (for Range).
// Remote cursors and selections are decorations coloured per peer, with the name on hover
// and above the caret.

export function monacoAdapter (editor, monaco) {
  const model = editor.getModel()
  model.setEOL(monaco.editor.EndOfLineSequence.LF)
  let applying = false
  let decorations = []
  const styled = new Set()
  const styleEl = document.createElement('style')
  document.head.appendChild(styleEl)

  const range = (from, to) => {
    const s = model.getPositionAt(from)
    const e = model.getPositionAt(to)
    return new monaco.Range(s.lineNumber, s.column, e.lineNumber, e.column)
  }
  const css = (id, color, name) => {
    if (styled.has(id + color + name)) return
    styled.add(id + color + name)
    const label = JSON.stringify(name).replace(/</g, '\\3c ')
    styleEl.textContent += `.arena-sel-${id}{background:${color}33}` +
      `.arena-caret-${id}{border-left:2px solid ${color};margin-left:-1px;position:relative}` +
      `.arena-caret-${id}::after{content:${label};position:absolute;top:-1.2em;left:-2px;font:11px sans-serif;` +
      `background:${color};color:#fff;padding:0 3px;white-space:nowrap;pointer-events:none;z-index:10}`
  }
  const safeColor = (c) => (/^#[0-9a-fA-F]{3,8}$/.test(c) ? c : '#888')

  return {
    getText: () => model.getValue(),
    getLength: () => model.getValueLength(),
    setText (text) {
      applying = true
      try { model.setValue(text) } finally { applying = false }
    },
    applyRemote (changes) {
      applying = true
      try {
        for (const c of changes) {
          model.applyEdits([{ range: range(c.pos, c.pos + c.delete), text: c.insert, forceMoveMarkers: true }])
        }
      } finally { applying = false }
    },
    onLocalChange (cb) {
      const sub = model.onDidChangeContent((e) => {
        if (applying) return
        // Offsets are against the text before the event; descending order keeps them valid.
        const changes = [...e.changes]
          .sort((a, b) => b.rangeOffset - a.rangeOffset)
          .map((c) => ({ pos: c.rangeOffset, delete: c.rangeLength, insert: c.text }))
        cb(changes)
      })
      return () => sub.dispose()
    },
    getSelection () {
      const s = editor.getSelection()
      if (!s) return null
      return {
        anchor: model.getOffsetAt({ lineNumber: s.selectionStartLineNumber, column: s.selectionStartColumn }),
        head: model.getOffsetAt({ lineNumber: s.positionLineNumber, column: s.positionColumn })
      }
    },
    onSelectionChange (cb) {
      const sub = editor.onDidChangeCursorSelection(() => { if (!applying) cb(this.getSelection()) })
      return () => sub.dispose()
    },
    renderCursors (peers) {
      const decos = []
      for (const p of peers) {
        if (p.head == null) continue
        const id = String(p.clientId)
        css(id, safeColor(p.color), p.name || 'anonymous')
        const anchor = p.anchor ?? p.head
        if (anchor !== p.head) {
          decos.push({ range: range(Math.min(anchor, p.head), Math.max(anchor, p.head)), options: { className: `arena-sel-${id}`, hoverMessage: { value: p.name } } })
        }
        decos.push({ range: range(p.head, p.head), options: { beforeContentClassName: `arena-caret-${id}`, hoverMessage: { value: p.name }, stickiness: 1 } })
      }
      decorations = editor.deltaDecorations(decorations, decos)
    },
    destroy () {
      decorations = editor.deltaDecorations(decorations, [])
      styleEl.remove()
    }
  }
}
