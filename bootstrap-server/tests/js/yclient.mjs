// A stock Yjs client (yjs + y-websocket from the npm registry) driven by arena-bootstrap's
// tests. Usage: node yclient.mjs '<json options>'
//   { url, room, token, name, inserts: [text...], expect: [marker...], files: {name: text}, timeoutMs }
// Connects to `${url}/${room}?token=...`, waits for sync, inserts each text at a random
// position (awaiting a macrotask between inserts so they interleave with other clients),
// then waits until the shared "code" text contains every expected marker, prints
// {"event":"final","text":...} and exits. Prints {"event":"denied"} when the server sends a
// y-protocols permission-denied message. `files` adds extra files as the room's schema has
// them: an entry in the "files" map and the text in the root "files/<name>".
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
globalThis.WebSocket ??= WebSocket // y-websocket 3 reads the global in its resync timer

const opts = JSON.parse(process.argv[2])
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
let denied = false
let recheck = () => {}
const origWarn = console.warn
console.warn = (...args) => {
  if (String(args[0]).includes('Permission denied')) {
    denied = true
    out({ event: 'denied', reason: args.map(String).join(' ') })
    recheck()
  } else origWarn(...args)
}
const doc = new Y.Doc()
const text = doc.getText('code')
const provider = new WebsocketProvider(opts.url, opts.room, doc, {
  params: { token: opts.token },
  WebSocketPolyfill: WebSocket,
  disableBc: true,
  resyncInterval: 2000
})
provider.awareness.setLocalStateField('user', { name: opts.name, color: '#30bced' })
const timer = setTimeout(() => { out({ event: 'timeout', text: text.toString() }); process.exit(2) }, opts.timeoutMs ?? 30000)
const tick = () => new Promise((r) => setTimeout(r, 5))

provider.on('sync', async (synced) => {
  if (!synced || provider._arenaStarted) return
  provider._arenaStarted = true
  out({ event: 'synced', text: text.toString() })
  for (const t of opts.inserts ?? []) {
    // Insert between markers (at the start or right after a closing bracket) so markers
    // stay whole while clients interleave.
    const s = text.toString()
    const spots = [0]
    for (let i = 0; i < s.length; i++) if (s[i] === ']' || s[i] === '>') spots.push(i + 1)
    const pos = spots[Math.floor(Math.random() * spots.length)]
    text.insert(pos, t)
    await tick()
  }
  for (const [name, body] of Object.entries(opts.files ?? {})) {
    doc.transact(() => {
      doc.getMap('files').set(name, JSON.stringify({ createdAt: Date.now() }))
      doc.getText(`files/${name}`).insert(0, body)
    })
  }
  out({ event: 'inserted' })
  const check = () => {
    const s = text.toString()
    if ((opts.expect ?? []).every((m) => s.includes(m)) && (!opts.waitDenied || denied)) {
      clearTimeout(timer)
      out({ event: 'final', text: s, state: Buffer.from(Y.encodeStateVector(doc)).toString('hex') })
      provider.destroy()
      setTimeout(() => process.exit(0), 50)
      return true
    }
    return false
  }
  recheck = check
  if (!check()) text.observe(() => check())
})
