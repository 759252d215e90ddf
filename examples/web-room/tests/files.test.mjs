// Multi-file rooms in the web room, in headless Chromium against the real arena-bootstrap
// binary: the host adds a file from the tab strip and writes it; the candidate's page shows
// the new tab, opens it and edits it, and the host's page follows; a bad name is refused with
// the reason; ▶ Run sends every file (a python main importing the helper prints its output);
// removing a file closes its tab on both pages; an observer cannot add files.
// The mesh is off (?mesh=0) so everything travels through the node: what a page shows, the
// node has.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, createRoom, launchChromium, waitFor, openRoomPage } from './support.mjs'

test('files in the web room', { timeout: 180_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const created = await createRoom(server.url, { title: 'Files test', language: 'python' })
  const problems = []

  const open = (role, name) => openRoomPage(chromium, server.url, created, role, name, { query: `editor=textarea&mesh=0`, problems })
  const fileText = (p) => p.page.evaluate(() => document.querySelector('#file-editor textarea').value)
  const tabs = (p) => p.page.evaluate(() => [...document.querySelectorAll('#file-tab-list .tab')].map((b) => b.textContent))

  const alice = await open('host', 'Alice')
  const bob = await open('candidate', 'Bob')
  const main = 'from helper import greet\nprint(greet())\n'
  await alice.page.click('#editor textarea')
  await alice.page.keyboard.type(main)

  // Alice adds helper.py: its tab opens, the code's editor hides.
  await alice.page.fill('#new-file', 'helper.py')
  await alice.page.click('#add-file')
  await alice.page.waitForSelector('#file-editor:not([hidden])', { timeout: 10_000 })
  assert.equal(await alice.page.isHidden('#editor'), true)
  assert.deepEqual(await tabs(alice), ['main.py', 'helper.py'])
  await alice.page.click('#file-editor textarea')
  const helper = "def greet():\n    return 'hi from helper'\n"
  await alice.page.keyboard.type(helper)

  // Bob's page gets the tab and the text; he opens it and edits; Alice's page follows.
  let last
  await waitFor(async () => { last = await tabs(bob); return last.includes('helper.py') }, { timeoutMs: 30_000, what: () => `Bob's tabs: ${last}` })
  await bob.page.click('#file-tab-list .tab[data-file="helper.py"]')
  await waitFor(async () => { last = await fileText(bob); return last === helper }, { timeoutMs: 30_000, what: () => `Bob's file: ${JSON.stringify(last)}` })
  await bob.page.click('#file-editor textarea')
  await bob.page.keyboard.press('Control+End')
  await bob.page.keyboard.type('# checked by Bob\n')
  await waitFor(async () => { last = await fileText(alice); return last === helper + '# checked by Bob\n' },
    { timeoutMs: 30_000, what: () => `Alice's file: ${JSON.stringify(last)}` })
  // The code is untouched by all this, on both pages.
  for (const p of [alice, bob]) assert.equal(await p.page.evaluate(() => window.arena.session.code), main)

  // A name that could escape the sandbox's directory: refused, with the reason.
  await bob.page.fill('#new-file', '../../etc/x')
  await bob.page.click('#add-file')
  await waitFor(async () => /bad file name/.test(await bob.page.textContent('#file-error')))
  assert.deepEqual(await tabs(bob), ['main.py', 'helper.py'])

  // ▶ Run sends every file: the main module imports the helper.
  await waitFor(async () => {
    const res = await fetch(`${server.url}/api/rooms/${created.room}?token=${created.tokens.host}`)
    const info = await res.json()
    return info.codeLength === main.length && info.files.includes('helper.py')
  }, { what: () => 'the node has the code and the file' })
  await bob.page.click('#run')
  for (const p of [alice, bob]) {
    await waitFor(async () => {
      last = await p.page.evaluate(() => ({ text: document.querySelector('#output').textContent, status: document.querySelector('#output').dataset.status }))
      return last.status === 'finished' && last.text === 'hi from helper\n'
    }, { timeoutMs: 60_000, what: () => `${p.name}: ${JSON.stringify(last)}` })
  }

  // An observer sees the files and cannot add one.
  const carol = await open('observer', 'Carol')
  await waitFor(async () => (await tabs(carol)).includes('helper.py'))
  assert.equal(await carol.page.isDisabled('#add-file'), true)

  // Alice removes the file: its tab closes on every page, and Bob's page shows the code.
  await alice.page.click('#remove-file')
  for (const p of [alice, bob, carol]) {
    await waitFor(async () => { last = await tabs(p); return last.length === 1 }, { what: () => `${p.name}: ${last}` })
  }
  assert.equal(await bob.page.isHidden('#file-editor'), true)
  assert.equal(await bob.page.isVisible('#editor'), true)
  assert.deepEqual(problems, [])
})
