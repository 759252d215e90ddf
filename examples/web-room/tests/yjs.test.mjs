// The WASM room (arena-web in Node) and a stock Yjs doc (yjs + y-websocket from npm) edit
// one room through the node's /yws endpoint and converge; each sees the other's presence.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { startServer, createRoom, waitFor, loadArena } from './support.mjs'

globalThis.WebSocket ??= WebSocket // y-websocket 3 reads the global in its resync timer

test('WASM room and a stock yjs doc converge through /yws', async (t) => {
  const server = await startServer()
  const created = await createRoom(server.url)
  const { ArenaSession } = await loadArena()

  const arena = new ArenaSession({ server: server.url, room: created.room, token: created.tokens.candidate, name: 'wasm peer', color: '#ff0000', WebSocket })
  const doc = new Y.Doc()
  const ytext = doc.getText('code')
  const provider = new WebsocketProvider(server.url.replace('http', 'ws') + '/yws', created.room, doc, {
    params: { token: created.tokens.host }, WebSocketPolyfill: WebSocket, disableBc: true
  })
  t.after(async () => { provider.destroy(); doc.destroy(); arena.destroy(); await server.stop() })
  provider.awareness.setLocalStateField('user', { name: 'yjs peer', color: '#00ff00' })

  await waitFor(() => arena.status === 'online' && provider.synced, { what: () => `arena ${arena.status}, yjs synced ${provider.synced}` })

  // Interleaved edits from both sides, without waiting for each other.
  for (let i = 0; i < 20; i++) {
    arena.edit([{ pos: 0, delete: 0, insert: `<w${i}>` }])
    ytext.insert(ytext.length, `[y${i}]`)
    await new Promise((r) => setImmediate(r))
  }
  const expected = (s) => [...Array(20).keys()].every((i) => s.includes(`<w${i}>`) && s.includes(`[y${i}]`))
  await waitFor(() => arena.code === ytext.toString() && expected(arena.code), {
    what: () => `\n wasm: ${arena.code}\n yjs:  ${ytext.toString()}`
  })

  // A deletion across both authors' text, from the Yjs side.
  ytext.delete(0, 10)
  await waitFor(() => arena.code === ytext.toString(), { what: () => `\n wasm: ${arena.code}\n yjs:  ${ytext.toString()}` })

  // Presence both ways: names, and the WASM peer's cursor as a Yjs relative position.
  arena.setSelection({ anchor: 2, head: 4 })
  await waitFor(() => arena.presence().some((p) => p.name === 'yjs peer'), { what: () => JSON.stringify(arena.presence()) })
  const theirs = await waitFor(() => [...provider.awareness.getStates().values()].find((s) => s.user?.name === 'wasm peer' && s.cursor))
  const head = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(theirs.cursor.head), doc)
  assert.equal(head.index, 4)
  assert.equal(arena.stats.errors, 0)
  assert.equal(arena.stats.rejected, 0)
})
