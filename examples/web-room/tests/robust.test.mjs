// Bad input in headless Chromium against the real arena-bootstrap binary (issue 5: "a closed
// socket, a dead signaling server, a token that expired: the page says so and keeps local
// edits"). The node is SIGKILLed under two Monaco pages, which keep typing (and syncing over
// their data channel), show they are offline, reconnect by themselves when the node comes
// back on the same port and data dir, and converge; a page that joins afterwards and talks
// only to the node has everything. An invite that expired before the page opened is
// refused with a clear message; one that expires while the page is open keeps its socket,
// is refused on reconnect, and nothing typed leaves the editor. Screenshots in target/web-room/.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { startServer, createRoom, launchChromium, loadArena, artifactsDir, waitFor } from './support.mjs'

const editor = process.env.ARENA_WEB_EDITOR ?? 'monaco'
// Chromium logs a refused WebSocket or fetch as a console error: that is the network, not the page.
const NETWORK_NOISE = /WebSocket connection to .* failed|Failed to load resource|net::ERR_/
const screenshot = async (p, file) => {
  mkdirSync(artifactsDir, { recursive: true })
  await p.page.screenshot({ path: join(artifactsDir, file) })
}

/** Pages on one Chromium, with the helpers the tests share. */
function pages (chromium, problems) {
  async function open (url, room, token, name, { mesh = true, online = true } = {}) {
    const context = await chromium.browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await context.newPage()
    page.on('pageerror', (e) => problems.push(`${name}: ${e.message}`))
    page.on('console', (m) => { if (m.type() === 'error' && !NETWORK_NOISE.test(m.text())) problems.push(`${name} console: ${m.text()}`) })
    await page.goto(`${url}/room/${room}?name=${name}&editor=${editor}${mesh ? '' : '&mesh=0'}#token=${token}`)
    if (online) await page.waitForFunction(() => window.arena?.session.status === 'online', null, { timeout: 30_000 })
    return { page, context, name }
  }
  const text = (p) => p.page.evaluate(() => window.arena.editorText())
  const docText = (p) => p.page.evaluate(() => window.arena.session.room.code())
  const status = (p) => p.page.evaluate(() => window.arena.session.status)
  const meshState = (p) => p.page.evaluate(() => ({
    status: window.arena.session.meshStatus,
    peers: window.arena.session.meshPeers(),
    badge: document.getElementById('mesh').textContent,
    badgeStatus: document.getElementById('mesh').dataset.status,
    badgePeers: document.getElementById('mesh').dataset.peers
  }))
  async function type (p, where, s) {
    await p.page.click({ monaco: '#editor .view-lines', textarea: '#editor textarea', codemirror: '#editor .cm-content' }[editor])
    await p.page.keyboard.press(where === 'start' ? 'Control+Home' : 'Control+End')
    await p.page.keyboard.type(s, { delay: 10 })
  }
  /** Every page's editor and document hold the same text, with every needle in it. */
  async function converged (list, needles, timeoutMs = 30_000) {
    let last = []
    await waitFor(async () => {
      last = await Promise.all(list.flatMap((p) => [text(p), docText(p)]))
      return last.every((s) => s === last[0]) && needles.every((n) => last[0].includes(n))
    }, { timeoutMs, what: () => '\n' + last.map((s, i) => `${list[i >> 1].name} ${i % 2 ? 'doc' : 'editor'}: ${JSON.stringify(s)}`).join('\n') })
    return last[0]
  }
  /** The page's editor and its document both hold every needle (what was typed is kept). */
  async function holds (p, needles) {
    // Remote typing may be arriving meanwhile: the editor shows the document's changes a
    // moment after the document has them, so wait for the two to agree, then check.
    let e = ''
    let d = ''
    await waitFor(async () => { [e, d] = [await text(p), await docText(p)]; return e === d },
      { what: () => `${p.name}: editor and document differ: ${JSON.stringify(e)} / ${JSON.stringify(d)}` })
    for (const n of needles) {
      assert.ok(e.includes(n), `${p.name}'s editor lost ${JSON.stringify(n)}: ${JSON.stringify(e)}`)
      assert.ok(d.includes(n), `${p.name}'s document lost ${JSON.stringify(n)}: ${JSON.stringify(d)}`)
    }
  }
  return { open, text, docText, status, meshState, type, converged, holds }
}

test('the node dies under two pages and comes back', { timeout: 240_000 }, async (t) => {
  let server = await startServer()
  const first = server
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop(); await first.stop() })
  const created = await createRoom(server.url, { title: 'Outage test', language: 'python' })
  const problems = []
  const { open, status, meshState, type, converged, holds } = pages(chromium, problems)
  const alice = await open(server.url, created.room, created.tokens.host, 'Alice')
  const bob = await open(server.url, created.room, created.tokens.candidate, 'Bob')
  const before = ['alice before ', 'bob before']
  const during = ['alice during ', 'bob during']
  const after = ['alice after ', 'bob after']

  await t.test('two pages type, converge and connect a data channel', async () => {
    await type(alice, 'end', before[0])
    await type(bob, 'end', before[1])
    await converged([alice, bob], before)
    // The mesh is up before the outage, so what happens during it does not depend on a race.
    await waitFor(async () => (await Promise.all([alice, bob].map(meshState))).every((m) => m.peers === 1 && m.status === 'online'),
      { timeoutMs: 30_000, what: async () => JSON.stringify(await Promise.all([alice, bob].map(meshState))) })
  })

  await t.test('SIGKILL: both pages say they are offline and keep typing', async () => {
    const exit = await server.kill('SIGKILL')
    assert.equal(exit.signal, 'SIGKILL')
    for (const p of [alice, bob]) {
      // Between retries the socket is 'offline' (the page says when it retries).
      await waitFor(async () => (await status(p)) === 'offline' && /offline.*edits are kept/.test(await p.page.textContent('#status')),
        { what: async () => `${p.name}: ${await status(p)} / ${await p.page.textContent('#status')}` })
      assert.equal(await p.page.getAttribute('#status', 'data-status'), 'offline')
      // The signaling socket died too: the badge says so, and its peer count is the mesh's.
      await waitFor(async () => {
        const m = await meshState(p)
        return m.status !== 'online' && m.badgeStatus === m.status && m.badgePeers === String(m.peers) && m.badge.includes(`signaling ${m.status}`)
      }, { what: async () => JSON.stringify(await meshState(p)) })
    }
    await type(alice, 'start', during[0])
    await type(bob, 'end', ' ' + during[1])
    // Each page keeps what it typed (the other's typing may still be on its way).
    await holds(alice, [...before, during[0]])
    await holds(bob, [...before, during[1]])
    // The data channel does not need the node: the two pages keep converging over it.
    for (const p of [alice, bob]) assert.equal((await meshState(p)).peers, 1, JSON.stringify(await meshState(p)))
    await converged([alice, bob], [...before, ...during])
    assert.match(await alice.page.textContent('#mesh'), /direct: 1 peer \(signaling (offline|connecting)\)/)
    await screenshot(alice, 'robust-node-down.png')
    for (const p of [alice, bob]) assert.notEqual(await status(p), 'online')
  })

  await t.test('the node restarts on the same port and data dir; the pages reconnect and converge', async () => {
    server = await startServer({ port: first.port, dataDir: first.dataDir })
    assert.equal(server.url, first.url)
    for (const p of [alice, bob]) {
      // The socket retries with backoff (at most 10 s apart), the signaling socket too (15 s).
      await p.page.waitForFunction(() => window.arena.session.status === 'online' && window.arena.session.meshStatus === 'online', null, { timeout: 45_000 })
      assert.equal(await p.page.textContent('#status'), 'online')
      await waitFor(async () => { const m = await meshState(p); return m.badgeStatus === 'online' && /^direct: 1 peer$/.test(m.badge) },
        { what: async () => JSON.stringify(await meshState(p)) })
    }
    await type(alice, 'end', ' ' + after[0])
    await type(bob, 'start', after[1] + ' ')
    await converged([alice, bob], [...before, ...during, ...after])
  })

  await t.test('a page that only talks to the restarted node has everything', async () => {
    const carol = await open(server.url, created.room, created.tokens.observer, 'Carol', { mesh: false })
    const all = await converged([alice, bob, carol], [...before, ...during, ...after])
    assert.equal(await carol.page.evaluate(() => window.arena.session.meshStatus), 'off')
    assert.equal(all, await carol.page.evaluate(() => window.arena.session.room.code()))
    await carol.context.close()
  })

  const stats = await Promise.all([alice, bob].map((p) => p.page.evaluate(() => window.arena.session.stats)))
  assert.deepEqual(stats.map((s) => s.errors + s.rejected), [0, 0], JSON.stringify(stats))
  assert.deepEqual(problems, [])
})

test('expired invite tokens', { timeout: 180_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const problems = []
  const { open, status, type, converged, holds, text } = pages(chromium, problems)
  // Rooms are self-certifying (room id = room key): a room made here, with tokens we sign,
  // is one the node serves (it bridges rooms it does not host).
  const { Room } = await loadArena()
  const seed = () => globalThis.crypto.getRandomValues(new Uint8Array(32))
  const nowS = () => Math.floor(Date.now() / 1000)
  const room = Room.create(seed(), seed(), 'Host', 'python', 'Expiry test', Date.now())
  const roomId = room.roomId()
  const token = (role, expirySecs) => room.inviteToken(role, expirySecs, Date.now())

  await t.test('a token that expired before the page opened is refused, clearly', async () => {
    const expired = token('candidate', nowS() - 60)
    // The node says so too (the page does not get that far: the WASM room checks first).
    const res = await fetch(`${server.url}/api/rooms/${roomId}?token=${expired}`)
    assert.equal(res.status, 403)
    assert.match((await res.json()).error, /expired/)
    const eve = await open(server.url, roomId, expired, 'Eve', { online: false })
    await eve.page.waitForSelector('#room-error:not([hidden])')
    const msg = await eve.page.textContent('#room-error')
    assert.match(msg, /invite link expired on .+ Ask the host for a new invite link/)
    assert.equal(await eve.page.getAttribute('#status', 'data-status'), 'denied')
    assert.match(await eve.page.textContent('#status'), /invite expired/)
    assert.equal(await eve.page.isHidden('#layout'), true)
    await screenshot(eve, 'robust-expired-link.png')
    await eve.context.close()
  })

  await t.test('a token that expires while the page is open: the node closes the connection at expiry, refuses a reconnect, nothing lost', async () => {
    // The short-lived grant: valid through second `expiry`, long enough for the page to join.
    const expiry = nowS() + 6
    // mesh=0: the node is the only link, so what reaches whom is the node's doing.
    const alice = await open(server.url, roomId, token('host', nowS() + 3600), 'Alice', { mesh: false })
    const bob = await open(server.url, roomId, token('candidate', expiry), 'Bob', { mesh: false })
    const typed = ['bob before expiry', ' bob after expiry, still connected']
    await type(bob, 'end', typed[0])
    await converged([alice, bob], [typed[0]])

    // At its expiry the node closes the open socket (4403, "invite expired at …"): the page
    // says so and does not retry.
    await bob.page.waitForFunction(() => window.arena.session.status === 'denied', null, { timeout: 20_000 })
    // A reconnect presents the token again: the node refuses it, for good (no retry loop).
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(true))
    await bob.page.evaluate(() => window.arena.session.transport.setOffline(false))
    await bob.page.waitForFunction(() => window.arena.session.status === 'denied', null, { timeout: 20_000 })
    // Typed after the close: it stays on Bob's page.
    await type(bob, 'end', typed[1])
    await holds(bob, typed)
    assert.equal(await bob.page.getAttribute('#status', 'data-status'), 'denied')
    assert.match(await bob.page.textContent('#status'), /invite expired/)
    await bob.page.waitForSelector('#room-error:not([hidden])')
    assert.match(await bob.page.textContent('#room-error'), /Your invite expired on .+ your edits stay on this page .+ Ask the host for a new invite link/)
    assert.equal(await bob.page.isVisible('#layout'), true)

    // Typing goes on: the editor and Bob's document keep everything.
    const refused = ' bob typing while refused'
    await type(bob, 'end', refused)
    await holds(bob, [...typed, refused])
    assert.equal(await status(bob), 'denied')
    await screenshot(bob, 'robust-expired-while-open.png')

    // Alice goes on with the node; a page joining now gets Bob's envelopes (his admission
    // from before the expiry still admits them), and not what the node never received.
    await type(alice, 'start', 'alice goes on ')
    const carol = await open(server.url, roomId, token('observer', nowS() + 3600), 'Carol', { mesh: false })
    const shared = await converged([alice, carol], ['alice goes on', typed[0]])
    assert.ok(!shared.includes(refused.trim()) && !shared.includes(typed[1].trim()), shared)
    assert.ok((await text(bob)).includes('alice goes on') === false, 'a refused page receives nothing from the node')
    await holds(bob, [...typed, refused])
    for (const p of [alice, bob, carol]) await p.context.close()
  })

  // What a refused page types still reaches the other pages over the data channel (they
  // hold valid envelopes of an admitted author); when one of them next asks the node for
  // what it lacks, the node sees it holds more and asks back, so the edits reach the node,
  // the record and node-only pages.
  await t.test('with the mesh on, what a refused page types reaches the node through a peer', async () => {
    const expiry = nowS() + 6
    const alice = await open(server.url, roomId, token('host', nowS() + 3600), 'Alice')
    const dan = await open(server.url, roomId, token('candidate', expiry), 'Dan')
    await waitFor(async () => (await Promise.all([alice, dan].map((p) => p.page.evaluate(() => window.arena.session.meshPeers())))).every((n) => n === 1),
      { timeoutMs: 30_000 })
    await waitFor(() => nowS() > expiry + 1, { timeoutMs: 20_000 })
    await dan.page.evaluate(() => { window.arena.session.transport.setOffline(true); window.arena.session.transport.setOffline(false) })
    await dan.page.waitForFunction(() => window.arena.session.status === 'denied', null, { timeout: 20_000 })
    const refused = 'dan typing while refused'
    await type(dan, 'end', refused)
    await holds(dan, [refused])
    // Over the data channel: Alice has it.
    await converged([alice, dan], [refused])
    // Alice's reconnection is a catch-up with the node: it should leave the node with it.
    await alice.page.evaluate(() => { window.arena.session.transport.setOffline(true); window.arena.session.transport.setOffline(false) })
    await alice.page.waitForFunction(() => window.arena.session.status === 'online', null, { timeout: 20_000 })
    const carol = await open(server.url, roomId, token('observer', nowS() + 3600), 'Carol', { mesh: false })
    try {
      await converged([alice, carol], [refused], 10_000)
    } finally {
      await holds(dan, [refused])
      for (const p of [alice, dan, carol]) await p.context.close()
    }
  })

  assert.deepEqual(problems, [])
})
