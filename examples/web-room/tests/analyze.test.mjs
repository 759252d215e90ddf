// The analyzer panel in headless Chromium against the real arena-bootstrap binary (offline
// analyzer: no model configured): host and candidate vote, the host clicks Analyze, both
// pages show the findings and the backend, and the host's Monaco editor marks the lines.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, createRoom, launchChromium, openRoomPage } from './support.mjs'

const CODE = 'def total(xs):\n    unused = 1\n    s = 0\n    for x in xs:\n        s += x\n    return s\n'

test('the analyzer panel', { timeout: 180_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const created = await createRoom(server.url, { title: 'Analyzer test', language: 'python' })
  const problems = []
  const open = (role, name) => openRoomPage(chromium, server.url, created, role, name, { query: `editor=monaco&mesh=0`, problems, consoleErrors: false })
  const alice = await open('host', 'Alice')
  const bob = await open('candidate', 'Bob')
  assert.equal(await alice.page.evaluate(() => window.arena.editorKind), 'Monaco')
  assert.equal(await bob.page.isVisible('#analyze'), false, 'only the host has the button')

  await alice.page.evaluate((code) => window.monacoEditor.setValue(code), CODE)
  await bob.page.waitForFunction((code) => window.arena.session.room.code() === code, CODE, { timeout: 20_000 })
  assert.equal(await alice.page.isDisabled('#analyze'), true, 'no votes yet')

  await alice.page.click('#vote-yes')
  await bob.page.click('#vote-yes')
  await alice.page.waitForSelector('#consensus[data-enabled="true"]', { timeout: 20_000 })
  await alice.page.waitForSelector('#analyze:not([disabled])', { timeout: 20_000 })
  await alice.page.click('#analyze')

  for (const p of [alice, bob]) {
    await p.page.waitForSelector('#analysis:not([hidden])', { timeout: 30_000 })
    assert.equal(await p.page.getAttribute('#analysis', 'data-backend'), 'offline', p.name)
    assert.match(await p.page.textContent('#analysis-backend'), /answered by offline/, p.name)
    assert.ok((await p.page.textContent('#analysis-summary')).length > 0, p.name)
    const lines = await p.page.$$eval('#findings li.finding', (els) => els.map((e) => [e.dataset.lines, e.textContent]))
    assert.ok(lines.some(([l, text]) => l.startsWith('2-') && /unused/.test(text)), `${p.name}: ${JSON.stringify(lines)}`)
    // The round moved on: the votes start again.
    await p.page.waitForFunction(() => window.arena.session.consensus().round === 1, null, { timeout: 20_000 })
  }
  // Monaco marks the finding's line (line 2: the unused variable).
  await alice.page.waitForFunction(() => window.monacoEditor.getModel().getAllDecorations().some((d) => d.options.className?.includes('finding-line') && d.range.startLineNumber === 2), null, { timeout: 10_000 })
  assert.equal(await alice.page.isDisabled('#analyze'), true, 'a new round needs new votes')
  assert.deepEqual(problems, [])
})
