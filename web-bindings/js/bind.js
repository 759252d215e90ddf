// Binds an ArenaSession to an editor through the adapter interface:
//
//   adapter.getText(): string
//   adapter.setText(text): void                      replace everything (initial load)
//   adapter.applyRemote(changes): void               splices {pos, delete, insert}, in order,
//                                                    UTF-16 offsets; must not echo as local
//   adapter.onLocalChange(cb): () => void            cb(changes) for the user's edits, as
//                                                    splices to apply in order
//   adapter.getSelection?(): {anchor, head} | null
//   adapter.onSelectionChange?(cb): () => void       cb({anchor, head} | null)
//   adapter.renderCursors?(peers): void              peers: [{clientId, name, color, anchor, head}]
//   adapter.destroy?(): void
//
// Any editor with change events and a way to apply edits fits in ~50 lines (see adapters/).

export function bindEditor (session, adapter) {
  adapter.setText(session.code)
  const offLocal = adapter.onLocalChange((changes) => session.edit(changes))
  const onChange = (e) => {
    adapter.applyRemote(e.detail.changes)
    // The editor's text must match the document after every batch of changes.
    if (adapter.getText() !== session.room.code()) adapter.setText(session.room.code())
  }
  const render = () => adapter.renderCursors?.(session.presence().filter((p) => !p.local))
  session.addEventListener('change', onChange)
  session.addEventListener('presence', render)
  const offSel = adapter.onSelectionChange?.((sel) => session.setSelection(sel)) ?? (() => {})
  const initial = adapter.getSelection?.()
  if (initial) session.setSelection(initial)
  render()
  return () => {
    offLocal()
    offSel()
    session.removeEventListener('change', onChange)
    session.removeEventListener('presence', render)
    adapter.destroy?.()
  }
}

/** One splice turning `before` into `after` (common prefix and suffix kept), or null.
 *  Never splits a surrogate pair. */
export function diffText (before, after) {
  if (before === after) return null
  const max = Math.min(before.length, after.length)
  let p = 0
  while (p < max && before.charCodeAt(p) === after.charCodeAt(p)) p++
  if (p > 0 && isHigh(before.charCodeAt(p - 1))) p--
  let s = 0
  while (s < max - p && before.charCodeAt(before.length - 1 - s) === after.charCodeAt(after.length - 1 - s)) s++
  if (s > 0 && isLow(before.charCodeAt(before.length - s))) s--
  return { pos: p, delete: before.length - p - s, insert: after.slice(p, after.length - s) }
}

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff

/** Where offset `at` moves when `change` is applied before/at it. */
export function shiftOffset (at, change) {
  if (at <= change.pos) return at
  if (at <= change.pos + change.delete) return change.pos + change.insert.length
  return at - change.delete + change.insert.length
}

/** Applies splices to a string, in order. */
export function applyChanges (text, changes) {
  for (const c of changes) text = text.slice(0, c.pos) + c.insert + text.slice(c.pos + c.delete)
  return text
}
