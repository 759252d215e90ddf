// Binds an ArenaSession to an editor through the adapter interface:
//
//   adapter.getText(): string
//   adapter.getLength?(): number                     the text's length in UTF-16 units, if the
//                                                    editor knows it without building the text
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

export function bindEditor (session, adapter, { checkDelayMs = 250, checkEveryMs = 5000 } = {}) {
  adapter.setText(session.code)
  const offLocal = adapter.onLocalChange((changes) => session.edit(changes))
  // The editor's text must match the document. After each batch of remote changes the
  // lengths are compared (cheap: neither side builds its text) and a mismatch is repaired at
  // once; the whole texts are compared once typing pauses (`checkDelayMs` after the last
  // batch, at an idle moment) and at least every `checkEveryMs` while it does not, so a
  // remote keystroke does not cost O(document).
  let checkedAt = Date.now()
  const resync = () => {
    checkedAt = Date.now()
    const code = session.room.code()
    if (adapter.getText() !== code) adapter.setText(code)
  }
  let checkTimer = null
  let idleHandle = null
  const cancelCheck = () => {
    clearTimeout(checkTimer)
    checkTimer = null
    if (idleHandle !== null) globalThis.cancelIdleCallback?.(idleHandle)
    idleHandle = null
  }
  const scheduleCheck = () => {
    cancelCheck()
    checkTimer = setTimeout(() => {
      checkTimer = null
      if (typeof globalThis.requestIdleCallback === 'function') {
        idleHandle = globalThis.requestIdleCallback(() => { idleHandle = null; resync() }, { timeout: 1000 })
      } else resync()
    }, checkDelayMs)
  }
  const onChange = (e) => {
    adapter.applyRemote(e.detail.changes)
    const len = adapter.getLength ? adapter.getLength() : null
    if (len === null || len !== session.room.codeLength() || Date.now() - checkedAt >= checkEveryMs) {
      cancelCheck()
      resync()
    } else scheduleCheck()
  }
  const render = () => adapter.renderCursors?.(session.presence().filter((p) => !p.local))
  session.addEventListener('change', onChange)
  session.addEventListener('presence', render)
  const offSel = adapter.onSelectionChange?.((sel) => session.setSelection(sel)) ?? (() => {})
  const initial = adapter.getSelection?.()
  if (initial) session.setSelection(initial)
  render()
  return () => {
    cancelCheck()
    offLocal()
    offSel()
    session.removeEventListener('change', onChange)
    session.removeEventListener('presence', render)
    adapter.destroy?.()
  }
}

/** Binds one of the room's extra files (`session.files()`) to an editor through the same
 *  adapter interface: the user's edits go to the file, and whenever the room changes
 *  (a peer's edit, a restore, the file removed) the editor is brought to the file's text by
 *  one minimal splice, so a caret elsewhere stays where it was. Returns the unbind function. */
export function bindFile (session, adapter, name) {
  adapter.setText(session.file(name) ?? '')
  const offLocal = adapter.onLocalChange((changes) => {
    try {
      session.editFile(name, changes)
    } catch (error) {
      session.dispatchEvent(new CustomEvent('error', { detail: { error } }))
    }
  })
  const sync = () => {
    const change = diffText(adapter.getText(), session.file(name) ?? '')
    if (change) adapter.applyRemote([change])
  }
  session.addEventListener('update', sync)
  return () => {
    offLocal()
    session.removeEventListener('update', sync)
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
