// The WebRTC mesh in headless Chromium against the real arena-bootstrap binary: two pages
// connect a data channel through /signal; with one page's /yws socket cut they keep
// converging over the channel alone; once /yws is back the node (and pages that only talk
// to the node) have everything. Garbage and forged messages on the signaling topic, and a
// junk frame on the data channel, are counted and ignored; a connection that dies or a page
// that leaves is dropped, and the mesh connects again.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, createRoom, launchChromium, waitFor } from './support.mjs'

const editor = process.env.ARENA_WEB_EDITOR ?? 'textarea'

test('WebRTC mesh between pages in headless Chromium', { timeout: 180_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const created = await createRoom(server.url, { title: 'Mesh test', language: 'python' })
  const problems = []

  async function open (role, name, { mesh = true } = {}) {
    const context = await chromium.browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await context.newPage()
    page.on('pageerror', (e) => problems.push(`${name}: ${e.message}`))
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`${name} console: ${m.text()}`) })
    await page.goto(`${server.url}/room/${created.room}?name=${name}&editor=${editor}${mesh ? '' : '&mesh=0'}#token=${created.tokens[role]}`)
    await page.waitForFunction(() => window.arena?.session.status === 'online', null, { timeout: 30_000 })
    return { page, context, name }
  }
  const text = (p) => p.page.evaluate(() => window.arena.editorText())
  const docText = (p) => p.page.evaluate(() => window.arena.session.room.code())
  const meshPeers = (p) => p.page.evaluate(() => window.arena.session.meshPeers())
  const meshStats = (p) => p.page.evaluate(() => ({ ...window.arena.session.mesh.stats, peers: window.arena.session.meshPeers(), status: window.arena.session.meshStatus }))
  async function type (p, where, s) {
    await p.page.click({ monaco: '#editor .view-lines', textarea: '#editor textarea', codemirror: '#editor .cm-content' }[editor])
    await p.page.keyboard.press(where === 'start' ? 'Control+Home' : 'Control+End')
    await p.page.keyboard.type(s, { delay: 10 })
  }
  /** Appends `s` as one local edit (a paste). */
  async function paste (p, s) {
    await p.page.evaluate(({ s, editor }) => {
      if (editor === 'monaco') {
        const m = window.monacoEditor.getModel()
        const end = m.getFullModelRange().getEndPosition()
        window.monacoEditor.executeEdits('test', [{ range: { startLineNumber: end.lineNumber, startColumn: end.column, endLineNumber: end.lineNumber, endColumn: end.column }, text: s }])
      } else if (editor === 'codemirror') {
        window.cmView.dispatch({ changes: { from: window.cmView.state.doc.length, insert: s } })
      } else {
        const ta = document.querySelector('#editor textarea')
        ta.value += s
        ta.dispatchEvent(new Event('input', { bubbles: true }))
      }
    }, { s, editor })
  }
  async function converged (pages, ...needles) {
    let last = []
    await waitFor(async () => {
      last = await Promise.all(pages.flatMap((p) => [text(p), docText(p)]))
      return last.every((s) => s === last[0]) && needles.every((n) => last[0].includes(n))
    }, { timeoutMs: 20_000, what: () => '\n' + last.map((s, i) => `${pages[i >> 1].name} ${i % 2 ? 'doc' : 'editor'}: ${JSON.stringify(s)}`).join('\n') })
    return last[0]
  }
  async function meshed (pages, n) {
    await waitFor(async () => (await Promise.all(pages.map(meshPeers))).every((c) => c === n),
      { timeoutMs: 30_000, what: async () => JSON.stringify(await Promise.all(pages.map(meshStats))) })
  }

  const alice = await open('host', 'Alice')
  const bob = await open('candidate', 'Bob')
  // Carol only talks to the node: what she sees, the node has.
  const carol = await open('observer', 'Carol', { mesh: false })

  await t.test('the two mesh pages connect a data channel', async () => {
    await meshed([alice, bob], 1)
    assert.equal(await meshPeers(carol), 0)
    assert.equal(await carol.page.evaluate(() => window.arena.session.meshStatus), 'off')
    await alice.page.waitForSelector('#mesh[data-peers="1"]')
    assert.match(await alice.page.textContent('#mesh'), /1 peer/)
    await type(alice, 'end', 'shared start ')
    await converged([alice, bob, carol], 'shared start')
    const stats = await meshStats(bob)
    assert.ok(stats.received > 0, JSON.stringify(stats))
  })

  await t.test('a big paste crosses both links in fragments', async () => {
    // Over the 64 KiB chunk size: its fragments reach Alice on /yws and on the data channel.
    const big = Array.from({ length: 3000 }, (_, i) => `line ${i} of a big paste ${'.'.repeat(40)}\n`).join('') + 'end of the big paste'
    await paste(bob, big)
    await converged([alice, bob, carol], 'end of the big paste', 'line 2999 of a big paste')
    assert.equal(await alice.page.evaluate(() => window.arena.session.stats.errors), 0)
  })

  await t.test('with its /yws socket cut, a page converges over the data channel alone', async () => {
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(true))
    await bob.page.waitForFunction(() => window.arena.session.status === 'offline')
    assert.equal(await meshPeers(bob), 1)
    await Promise.all([
      type(alice, 'start', 'alice over the mesh '),
      type(bob, 'end', ' bob over the mesh')
    ])
    await converged([alice, bob], 'alice over the mesh', 'bob over the mesh', 'shared start')
    // The node has Alice's edit but not Bob's: Bob's only went over the data channel.
    await converged([carol], 'alice over the mesh')
    assert.ok(!(await text(carol)).includes('bob over the mesh'))
    await type(bob, 'end', ' and more from bob')
    await converged([alice, bob], 'and more from bob')
  })

  await t.test('when /yws is back the node gets everything', async () => {
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(false))
    await bob.page.waitForFunction(() => window.arena.session.status === 'online', null, { timeout: 20_000 })
    await converged([alice, bob, carol], 'alice over the mesh', 'bob over the mesh', 'and more from bob')
    const dave = await open('observer', 'Dave', { mesh: false })
    await converged([alice, bob, carol, dave], 'alice over the mesh', 'bob over the mesh', 'and more from bob')
    await dave.context.close()
  })

  await t.test('garbage and forged signaling messages are ignored', async () => {
    const ids = await Promise.all([alice, bob].map((p) => p.page.evaluate(() => window.arena.session.mesh.peerId)))
    const before = await meshStats(bob)
    const refused = async () => Number((await (await fetch(`${server.url}/metrics`)).text()).match(/^arena_signal_refused_total (\d+)/m)?.[1] ?? 0)
    const refusedBefore = await refused()
    // A third socket on the room topic, with a valid token, from Carol's page.
    await carol.page.evaluate(async ({ url, token, room, ids: [a, b] }) => {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/signal?token=${encodeURIComponent(token)}`)
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
      const pub = (data) => ws.send(JSON.stringify({ type: 'publish', topic: room, data }))
      ws.send('not json at all {')
      ws.send('[1, 2, 3]')
      ws.send(JSON.stringify({ type: 'publish', topic: room, data: 'a string' }))
      pub(null)
      pub({ type: 'arena-offer' })
      pub({ type: 'arena-offer', from: 'zz', to: b, conn: '0123456789abcdef', sdp: 'v=0' })
      pub({ type: 'announce', from: 'y-webrtc-peer' })
      pub({ type: 'arena-nonsense', from: a })
      // Forged as Alice, to Bob: a bogus offer, answer and candidates.
      pub({ type: 'arena-offer', from: a, to: b, conn: 'ffffffffffffffff', sdp: 'v=0\r\nthis is not sdp\r\n' })
      pub({ type: 'arena-offer', from: b, to: a, conn: 'eeeeeeeeeeeeeeee', sdp: 'v=0\r\nwrong direction\r\n' })
      pub({ type: 'arena-answer', from: a, to: b, conn: 'ffffffffffffffff', sdp: 'v=0\r\n' })
      pub({ type: 'arena-ice', from: a, to: b, conn: 'ffffffffffffffff', candidate: { candidate: 42 } })
      pub({ type: 'arena-ice', from: a, to: b, conn: 'ffffffffffffffff', candidate: { candidate: 'candidate:garbage', sdpMid: '0' } })
      pub({ type: 'arena-ice', from: a, to: b, conn: 'ffffffffffffffff', candidate: { candidate: 'x'.repeat(5000) } })
      // Announces of peers that never answer (they time out).
      pub({ type: 'arena-announce', from: '0'.repeat(32) })
      pub({ type: 'arena-announce', from: 'f'.repeat(32) })
      await new Promise((resolve) => { ws.onmessage = resolve; ws.send(JSON.stringify({ type: 'ping' })) })
      ws.close()
    }, { url: server.url, token: created.tokens.host, room: created.room, ids })
    // The node binds `from` to the connection that first used it: the socket's first `from`
    // ('zz') is its own, every other one (Alice's, Bob's, the announces') is refused there
    // and never reaches Bob; the garbage that does reach him is counted as malformed.
    await waitFor(async () => (await refused()) >= refusedBefore + 8, { what: async () => `refused ${await refused()}` })
    await waitFor(async () => (await meshStats(bob)).malformed >= before.malformed + 2,
      { what: async () => JSON.stringify(await meshStats(bob)) })
    // Junk bytes on the data channel: an error the session survives.
    const errors = await bob.page.evaluate(() => window.arena.session.stats.errors)
    assert.equal(await alice.page.evaluate((b) => window.arena.session.mesh.sendTo(b, new Uint8Array([0x63, 1, 2, 3])), ids[1]), true)
    await bob.page.waitForFunction((n) => window.arena.session.stats.errors === n + 1, errors)
    // The link between Alice and Bob still carries edits, /yws cut again to be sure.
    await meshed([alice, bob], 1)
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(true))
    await type(alice, 'end', ' after the garbage')
    await converged([alice, bob], 'after the garbage')
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(false))
    await bob.page.waitForFunction(() => window.arena.session.status === 'online', null, { timeout: 20_000 })
  })

  await t.test('a connection closed under a page is dropped and connects again', async () => {
    const before = await Promise.all([alice, bob].map(meshStats))
    // Bob's side dies without any event on his side; Alice sees her channel close.
    await bob.page.evaluate(() => { for (const p of window.arena.session.mesh.links.values()) p.pc.close() })
    await waitFor(async () => {
      const now = await Promise.all([alice, bob].map(meshStats))
      return now.every((s, i) => s.peers === 1 && s.opened > before[i].opened)
    }, { timeoutMs: 30_000, what: async () => JSON.stringify(await Promise.all([alice, bob].map(meshStats))) })
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(true))
    await type(bob, 'end', ' on the new channel')
    await converged([alice, bob], 'on the new channel')
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(false))
    await bob.page.waitForFunction(() => window.arena.session.status === 'online', null, { timeout: 20_000 })
  })

  await t.test('a page that leaves is dropped; a new one connects', async () => {
    await bob.context.close()
    await waitFor(async () => (await meshPeers(alice)) === 0, { what: async () => JSON.stringify(await meshStats(alice)) })
    const erin = await open('candidate', 'Erin')
    await meshed([alice, erin], 1)
    await erin.page.evaluate(() => window.arena.session.transport.setOffline(true))
    await type(erin, 'end', ' erin says hi')
    await converged([alice, erin], 'erin says hi', 'after the garbage')
    await erin.page.evaluate(() => window.arena.session.transport.setOffline(false))
    await converged([alice, erin, carol], 'erin says hi')
  })

  const stats = await Promise.all([alice, carol].map((p) => p.page.evaluate(() => window.arena.session.stats)))
  assert.deepEqual(stats.map((s) => s.errors + s.rejected), [0, 0], JSON.stringify(stats))
  assert.deepEqual(problems, [])
})
