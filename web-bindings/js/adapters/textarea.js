// A plain <textarea> as an editor. Remote cursors are listed in a title tooltip (a textarea
// cannot draw them inline).

import { diffText, shiftOffset, applyChanges } from '../bind.js'

export function textareaAdapter (el) {
  let shadow = el.value
  const doc = el.ownerDocument
  return {
    getText: () => el.value,
    getLength: () => el.value.length,
    setText (text) { el.value = text; shadow = text },
    applyRemote (changes) {
      let { selectionStart: a, selectionEnd: b, selectionDirection: dir } = el
      for (const c of changes) { a = shiftOffset(a, c); b = shiftOffset(b, c) }
      el.value = applyChanges(el.value, changes)
      shadow = el.value
      if (doc.activeElement === el) el.setSelectionRange(a, b, dir)
    },
    onLocalChange (cb) {
      const onInput = () => {
        const change = diffText(shadow, el.value)
        shadow = el.value
        if (change) cb([change])
      }
      el.addEventListener('input', onInput)
      return () => el.removeEventListener('input', onInput)
    },
    getSelection () {
      if (doc.activeElement !== el) return null
      const back = el.selectionDirection === 'backward'
      return back ? { anchor: el.selectionEnd, head: el.selectionStart } : { anchor: el.selectionStart, head: el.selectionEnd }
    },
    onSelectionChange (cb) {
      let last = ''
      const check = () => {
        const sel = this.getSelection()
        const key = JSON.stringify(sel)
        if (key !== last) { last = key; cb(sel) }
      }
      doc.addEventListener('selectionchange', check)
      el.addEventListener('blur', check)
      return () => { doc.removeEventListener('selectionchange', check); el.removeEventListener('blur', check) }
    },
    renderCursors (peers) {
      el.title = peers.filter((p) => p.head != null).map((p) => `${p.name}: offset ${p.head}`).join('\n')
    }
  }
}
