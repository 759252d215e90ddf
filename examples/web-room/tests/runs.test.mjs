// ▶ Run in the web room, in headless Chromium against the real arena-bootstrap binary (its
// local executor, bubblewrap and python3): the host runs python code with stdin, both pages
// show the output live from the room's document (not from the HTTP answer), then the final
// output, and the versions panel marks the run's version; an observer cannot run.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, createRoom, launchChromium, waitFor, openRoomPage } from './support.mjs'

test('runs in the web room', { timeout: 180_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const created = await createRoom(server.url, { title: 'Run test', language: 'python' })
  const problems = []

  const open = (role, name) => openRoomPage(chromium, server.url, created, role, name, { query: `editor=textarea`, problems })
  const output = (p) => p.page.evaluate(() => ({ text: document.querySelector('#output').textContent, status: document.querySelector('#output').dataset.status }))

  const alice = await open('host', 'Alice')
  const bob = await open('candidate', 'Bob')
  const code = "import sys, time\nprint('hello', sys.stdin.read().strip(), flush=True)\ntime.sleep(1.5)\nprint('done')\n"
  await alice.page.click('#editor textarea')
  await alice.page.keyboard.type(code)
  // The node runs what it holds (the pages may also talk directly): wait until it has it.
  const nodeHas = async (length) => {
    const res = await fetch(`${server.url}/api/rooms/${created.room}?token=${created.tokens.host}`)
    return (await res.json()).codeLength === length
  }
  await waitFor(() => nodeHas(code.length), { what: () => 'the node has the code' })

  await alice.page.fill('#stdin', 'room')
  await alice.page.click('#run')
  // Live: Bob's page shows the first line while the program still sleeps, from the document.
  let last
  await waitFor(async () => { last = await output(bob); return last.status === 'running' && last.text.includes('hello room') },
    { timeoutMs: 30_000, what: () => JSON.stringify(last) })
  // Then the final record, on both pages.
  for (const p of [alice, bob]) {
    await waitFor(async () => { last = await output(p); return last.status === 'finished' && last.text === 'hello room\ndone\n' },
      { timeoutMs: 30_000, what: () => `${p.name}: ${JSON.stringify(last)}` })
    assert.match(await p.page.textContent('#run-status'), /python · exit 0/)
    // The run's version, marked as one.
    await p.page.waitForSelector('#versions li.run[data-cause="run"]', { timeout: 10_000 })
  }
  assert.equal(await alice.page.isDisabled('#run'), false)

  // A failing run: its status shows, and no second run version appears.
  await bob.page.click('#editor textarea')
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type('raise SystemExit(2)\n')
  await waitFor(() => nodeHas(code.length + 'raise SystemExit(2)\n'.length), { what: () => 'the node has the new line' })
  await bob.page.click('#run')
  for (const p of [alice, bob]) {
    await waitFor(async () => { last = await p.page.textContent('#run-status'); return /exit 2/.test(last) },
      { timeoutMs: 30_000, what: () => `${p.name}: ${last}` })
  }
  assert.equal(await alice.page.locator('#versions li.run').count(), 1)

  const carol = await open('observer', 'Carol')
  assert.equal(await carol.page.isDisabled('#run'), true)
  await waitFor(async () => /exit 2/.test(await carol.page.textContent('#run-status')))
  assert.deepEqual(problems, [])
})
