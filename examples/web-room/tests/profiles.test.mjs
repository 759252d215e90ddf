// A participant who signed up through a Clerk webhook shows their real name in the web room:
// the real arena-bootstrap binary with a Clerk secret, a webhook signed the Svix way (node's
// own crypto), a room tied to the user, headless Chromium. The page checks the node's
// signature on each record (a record the node did not sign is not shown), and a deletion
// takes the name away.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { startServer, createRoom, launchChromium } from './support.mjs'

const SECRET = 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD'

async function webhook (url, id, event) {
  const body = JSON.stringify(event)
  const ts = Math.floor(Date.now() / 1000)
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64')
  const sig = createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')
  const res = await fetch(`${url}/webhooks/clerk`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'svix-id': id, 'svix-timestamp': String(ts), 'svix-signature': `v1,${sig}` },
    body
  })
  assert.equal(res.status, 200, await res.text())
}

const user = (type, id, first, last) => ({
  object: 'event',
  type,
  data: type === 'user.deleted'
    ? { id, deleted: true, object: 'user' }
    : { id, object: 'user', first_name: first, last_name: last, image_url: null, email_addresses: [], updated_at: Date.now() }
})

test('a webhook-created user shows their real name in the room', { timeout: 120_000 }, async (t) => {
  process.env.ARENA_CLERK_WEBHOOK_SECRET = SECRET
  const server = await startServer()
  delete process.env.ARENA_CLERK_WEBHOOK_SECRET
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  await webhook(server.url, 'msg_ada', user('user.created', 'user_ada', 'Ada', 'Lovelace'))
  const created = await createRoom(server.url, { title: 'Profiles', language: 'python', host_user: 'user_ada', candidate_user: 'user_grace' })
  assert.deepEqual(created.users, { host: 'user_ada', candidate: 'user_grace' })
  const problems = []
  const context = await chromium.browser.newContext()
  const page = await context.newPage()
  page.on('pageerror', (e) => problems.push(e.message))
  await page.goto(`${server.url}/room/${created.room}?name=Someone&editor=textarea&mesh=0&profilesPoll=300#token=${created.tokens.candidate}`)
  await page.waitForFunction(() => window.arena?.session.status === 'online', null, { timeout: 30_000 })
  await page.waitForFunction(() => document.querySelector('#profiles [data-role="host"]')?.textContent.includes('Ada Lovelace'), null, { timeout: 20_000 })
  // Grace signs up after the room was made: her name arrives with the next poll.
  await webhook(server.url, 'msg_grace', user('user.created', 'user_grace', 'Grace', 'Hopper'))
  await page.waitForFunction(() => document.querySelector('#profiles [data-role="candidate"]')?.textContent.includes('Grace Hopper'), null, { timeout: 20_000 })
  // The page's check: a record whose text was changed, or signed for another room, is dropped.
  const verdicts = await page.evaluate(async (room) => {
    const { verified } = await import('/profiles.js')
    const key = (await (await fetch('/api/peers')).json()).nodeKey
    const token = new URLSearchParams(location.hash.slice(1)).get('token')
    const { profiles } = await (await fetch(`/api/rooms/${room}/profiles?token=${token}`)).json()
    const forged = profiles.map((p) => ({ ...p, record: p.record.replace('Ada', 'Eve') }))
    return { good: verified(profiles, key, room).length, forged: verified(forged, key, room).filter((r) => r.name.includes('Eve')).length, otherRoom: verified(profiles, key, 'ab'.repeat(32)).length }
  }, created.room)
  assert.deepEqual(verdicts, { good: 2, forged: 0, otherRoom: 0 })
  // Deleted in Clerk: the name leaves the room.
  await webhook(server.url, 'msg_del', user('user.deleted', 'user_ada'))
  await page.waitForFunction(() => !document.querySelector('#profiles')?.textContent.includes('Ada'), null, { timeout: 20_000 })
  assert.match(await page.textContent('#profiles'), /Grace Hopper/)
  assert.deepEqual(problems, [])
})
