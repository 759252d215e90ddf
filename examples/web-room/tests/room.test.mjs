// The web room in headless Chromium (Debian's chromium driven by playwright-core) against
// the real arena-bootstrap binary: concurrent typing in Monaco, a late joiner, an offline
// page that merges on reconnect, votes and consensus, restoring a version; a screenshot.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { startServer, createRoom, launchChromium, artifactsDir, waitFor, openRoomPage } from './support.mjs'

const editor = process.env.ARENA_WEB_EDITOR ?? 'monaco'

test('web room in headless Chromium', { timeout: 180_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const created = await createRoom(server.url, { title: 'Browser test', language: 'python' })
  const problems = []

  const open = (role, name) => openRoomPage(chromium, server.url, created, role, name, { query: `editor=${editor}`, problems })
  const text = (p) => p.page.evaluate(() => window.arena.editorText())
  const docText = (p) => p.page.evaluate(() => window.arena.session.room.code())
  /** Focuses the editor and puts the caret at the start or the end of the document. */
  async function caret (p, where) {
    await p.page.click({ monaco: '#editor .view-lines', textarea: '#editor textarea', codemirror: '#editor .cm-content' }[editor])
    await p.page.keyboard.press(where === 'start' ? 'Control+Home' : 'Control+End')
  }
  async function converged (pages, ...needles) {
    let last = []
    await waitFor(async () => {
      last = await Promise.all(pages.flatMap((p) => [text(p), docText(p)]))
      return last.every((s) => s === last[0]) && needles.every((n) => last[0].includes(n))
    }, { timeoutMs: 20_000, what: () => '\n' + last.map((s, i) => `${pages[i >> 1].name} ${i % 2 ? 'doc' : 'editor'}: ${JSON.stringify(s)}`).join('\n') })
    return last[0]
  }

  const alice = await open('host', 'Alice')
  const bob = await open('candidate', 'Bob')
  assert.equal(await alice.page.evaluate(() => window.arena.editorKind), { monaco: 'Monaco', textarea: 'textarea', codemirror: 'CodeMirror 6' }[editor])

  await t.test('two pages type concurrently and converge', async () => {
    await caret(alice, 'end')
    await alice.page.keyboard.type('middle line ')
    await converged([alice, bob], 'middle line')
    await Promise.all([
      (async () => { await caret(alice, 'start'); await alice.page.keyboard.type('alice types here ', { delay: 15 }) })(),
      (async () => { await caret(bob, 'end'); await bob.page.keyboard.type('bob types there', { delay: 15 }) })()
    ])
    const s = await converged([alice, bob], 'alice types here', 'bob types there', 'middle line')
    assert.ok(s.indexOf('alice types here') < s.indexOf('bob types there'), s)
    // Bob's caret, as a relative position in his presence, resolves on Alice's side.
    const end = s.length
    await waitFor(() => alice.page.evaluate((end) => window.arena.session.presence().some((p) => p.name === 'Bob' && p.head === end), end),
      { what: () => alice.page.evaluate(() => JSON.stringify(window.arena.session.presence())) })
    if (editor === 'monaco') await alice.page.waitForSelector('[class*="arena-caret-"]')
  })

  await t.test('a third page joins late and gets the document', async () => {
    const carol = await open('observer', 'Carol')
    await converged([alice, bob, carol], 'alice types here', 'bob types there')
    assert.equal(await carol.page.evaluate(() => window.arena.session.role), 'observer')
    // Everyone sees everyone.
    await waitFor(() => alice.page.evaluate(() => window.arena.session.presence().length === 3))
    // An observer may not publish on /signal: its page reads through the node and does not
    // try the mesh (no 'signaling denied').
    assert.equal(await carol.page.evaluate(() => window.arena.session.meshStatus), 'off')
    assert.doesNotMatch(await carol.page.textContent('#mesh'), /denied/)
    await carol.context.close()
  })

  await t.test('a page goes offline, types, reconnects and merges', async () => {
    await bob.context.setOffline(true)
    await bob.page.waitForFunction(() => window.arena.session.status === 'offline')
    assert.match(await bob.page.textContent('#status'), /offline/)
    await caret(bob, 'end')
    await bob.page.keyboard.type(' typed while offline')
    await caret(alice, 'start')
    await alice.page.keyboard.type('meanwhile online ')
    assert.ok(!(await text(alice)).includes('typed while offline'))
    await bob.context.setOffline(false)
    await bob.page.waitForFunction(() => window.arena.session.status === 'online', null, { timeout: 20_000 })
    await converged([alice, bob], 'typed while offline', 'meanwhile online')
  })

  await t.test('vote: both see consensus', async () => {
    await alice.page.click('#vote-yes')
    await bob.page.waitForFunction(() => window.arena.session.consensus().satisfied.includes('host'))
    assert.equal(await bob.page.getAttribute('#consensus', 'data-enabled'), 'false')
    await bob.page.click('#vote-yes')
    for (const p of [alice, bob]) {
      await p.page.waitForSelector('#consensus[data-enabled="true"]', { timeout: 10_000 })
      assert.match(await p.page.textContent('#consensus'), /analyzer enabled/)
    }
  })

  await t.test('restore a version: both see it', async () => {
    const before = await converged([alice, bob])
    await alice.page.click('#save-version')
    await bob.page.waitForSelector('#versions li', { timeout: 10_000 })
    await caret(bob, 'end')
    await bob.page.keyboard.type(' after the version')
    await converged([alice, bob], 'after the version')
    await alice.page.click('#versions li')
    await alice.page.waitForSelector('#diff .added')
    assert.match(await alice.page.textContent('#diff'), /after the version/)
    await alice.page.click('#restore')
    const after = await converged([alice, bob])
    assert.equal(after, before)
    await bob.page.waitForFunction(() => window.arena.session.versions().some((v) => v.cause === 'restore'))
  })

  await t.test('a bad invite token is reported on the page', async () => {
    const page = await (await chromium.browser.newContext()).newPage()
    await page.goto(`${server.url}/room/${created.room}?name=Eve#token=not-a-token`)
    await page.waitForSelector('#room-error:not([hidden])')
    assert.match(await page.textContent('#room-error'), /not valid/)
    await page.context().close()
  })

  await t.test('screenshot of the room', async () => {
    mkdirSync(artifactsDir, { recursive: true })
    await alice.page.click('#versions li')
    await alice.page.screenshot({ path: join(artifactsDir, 'room.png') })
    await bob.page.screenshot({ path: join(artifactsDir, 'room-candidate.png') })
  })

  const stats = await Promise.all([alice, bob].map((p) => p.page.evaluate(() => window.arena.session.stats)))
  assert.deepEqual(stats.map((s) => s.errors + s.rejected), [0, 0], JSON.stringify(stats))
  assert.deepEqual(problems, [])
})
