// The room's 1-on-1 call in headless Chromium (fake camera and microphone) against the real
// arena-bootstrap binary: host and candidate call each other through /signal and each
// decodes the other's video and audio (getStats); mute and camera off stop what is sent; a
// page whose camera permission is denied says so and still receives; an observer receives
// both without ever asking for a camera and sends nothing; an ICE restart keeps the video
// flowing; a connection closed under a page comes back; screen share; garbage, forged and
// hostile call messages (a hostile observer's offer) are refused or ignored; a member the
// host removes loses the call.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { startServer, createRoom, launchChromium, waitFor, artifactsDir } from './support.mjs'

const MEDIA_FLAGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required']

/** What a page's call sees, per remote peer (by name): decoded video frames, received audio
 *  packets, what it sends, its connection state and its local ICE ufrag. */
export async function callStats (page) {
  return page.evaluate(async () => {
    const call = window.arena.call
    const out = { peerId: call.peerId, status: call.status, stats: { ...call.stats }, gum: window.__gum ?? null, peers: {} }
    for (const p of call.peers.values()) {
      const r = { id: p.id, role: p.role, media: p.media, state: p.pc?.connectionState ?? 'none', video: 0, audio: 0, outAudio: 0, outVideo: 0, outbound: 0, ufrag: null }
      if (p.pc) {
        const s = await p.pc.getStats()
        s.forEach((x) => {
          if (x.type === 'inbound-rtp' && x.kind === 'video') r.video += x.framesDecoded ?? 0
          if (x.type === 'inbound-rtp' && x.kind === 'audio') r.audio += x.packetsReceived ?? 0
          if (x.type === 'outbound-rtp') {
            r.outbound++
            if (x.kind === 'audio') r.outAudio += x.packetsSent ?? 0
            else r.outVideo += x.packetsSent ?? 0
          }
        })
        r.ufrag = /a=ice-ufrag:(\S+)/.exec(p.pc.localDescription?.sdp ?? '')?.[1] ?? null
        r.fingerprint = /a=fingerprint:\S+ (\S+)/.exec(p.pc.remoteDescription?.sdp ?? '')?.[1] ?? null
      }
      out.peers[p.name] = r
    }
    return out
  })
}

test('the 1-on-1 call in headless Chromium', { timeout: 300_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium({ args: MEDIA_FLAGS })
  t.after(async () => { await chromium.close(); await server.stop() })
  const created = await createRoom(server.url, { title: 'Call test', language: 'python' })
  const problems = []

  /** A room page that joins the call (?call=1); `deny`: getUserMedia throws NotAllowedError.
   *  Every page counts its getUserMedia calls in window.__gum. */
  async function open (role, name, { deny = false } = {}) {
    const context = await chromium.browser.newContext({ viewport: { width: 1280, height: 800 } })
    await context.addInitScript((deny) => {
      window.__gum = 0
      const md = navigator.mediaDevices
      if (!md) return
      const real = md.getUserMedia.bind(md)
      md.getUserMedia = async (c) => {
        window.__gum++
        if (deny) throw new DOMException('Permission denied', 'NotAllowedError')
        return real(c)
      }
    }, deny)
    const page = await context.newPage()
    page.on('pageerror', (e) => problems.push(`${name}: ${e.message}`))
    page.on('console', (m) => { if (process.env.ARENA_TEST_VERBOSE) console.error(name, m.type(), m.text()) })
    await page.goto(`${server.url}/room/${created.room}?name=${name}&editor=textarea&mesh=0&call=1#token=${created.tokens[role]}`)
    await page.waitForFunction(() => window.arena?.call?.status === 'online', null, { timeout: 30_000 })
    return { page, context, name, role }
  }
  const stats = (p) => callStats(p.page)
  /** Waits until `p` decodes video from `from` (by name), and more a moment later. */
  async function receives (p, from, { audio = true } = {}) {
    let first = null
    await waitFor(async () => {
      const s = (await stats(p)).peers[from]
      if (!s || s.video === 0 || (audio && s.audio === 0)) return false
      if (!first) { first = s; return false }
      return s.video > first.video
    }, { timeoutMs: 45_000, what: async () => `${p.name} from ${from}: ${JSON.stringify(await stats(p))}` })
  }
  /** Waits until `f(stats)` stays the same over a second (something stopped growing). */
  async function settles (p, f) {
    let last = null
    await waitFor(async () => {
      const v = f(await stats(p))
      const same = last !== null && v === last
      last = v
      if (!same) await new Promise((r) => setTimeout(r, 1000))
      return same
    }, { timeoutMs: 20_000, what: async () => `${p.name}: ${JSON.stringify(await stats(p))}` })
  }
  async function grows (p, f) {
    const before = f(await stats(p))
    await waitFor(async () => f(await stats(p)) > before, { timeoutMs: 20_000, what: async () => `${p.name}: ${JSON.stringify(await stats(p))}` })
  }

  const host = await open('host', 'Hana')
  const cand = await open('candidate', 'Cole')

  await t.test('host and candidate see and hear each other', async () => {
    await receives(host, 'Cole')
    await receives(cand, 'Hana')
    for (const [p, other, role] of [[host, 'Cole', 'candidate'], [cand, 'Hana', 'host']]) {
      const tile = p.page.locator(`.tile[data-role="${role}"]`)
      await tile.waitFor()
      assert.match(await tile.locator('figcaption').textContent(), new RegExp(`${other} · ${role}`))
      await p.page.waitForFunction((role) => {
        const v = document.querySelector(`.tile[data-role="${role}"] video`)
        return v && v.readyState >= 2 && v.videoWidth > 0 && !v.paused
      }, role)
      // Our own preview: muted, so the microphone never plays back.
      assert.equal(await p.page.locator('.tile.local video').evaluate((v) => v.muted), true)
      assert.equal(await p.page.evaluate(() => window.__gum), 1)
    }
    assert.match(await host.page.textContent('#call-status'), /1 connected/)
    mkdirSync(artifactsDir, { recursive: true })
    await host.page.locator('#call').screenshot({ path: join(artifactsDir, 'call-host.png') })
  })

  await t.test('mute and camera off stop what is sent; unmute and camera on resume it', async () => {
    const out = (name, k) => (s) => s.peers[name][k]
    await host.page.click('#call-mute')
    assert.equal(await host.page.evaluate(() => window.arena.call.localStream.getAudioTracks()[0].enabled), false)
    assert.equal(await host.page.textContent('#call-mute'), 'Unmute')
    await settles(host, out('Cole', 'outAudio'))
    await settles(cand, out('Hana', 'audio'))
    await host.page.click('#call-mute')
    assert.equal(await host.page.evaluate(() => window.arena.call.localStream.getAudioTracks()[0].enabled), true)
    await grows(host, out('Cole', 'outAudio'))
    await grows(cand, out('Hana', 'audio'))

    await cand.page.click('#call-camera')
    await settles(cand, out('Hana', 'outVideo'))
    await settles(host, out('Cole', 'video'))
    assert.equal(await cand.page.locator('.tile.local').evaluate((t) => t.classList.contains('no-video')), true)
    await cand.page.click('#call-camera')
    await grows(host, out('Cole', 'video'))
  })

  await t.test('the device picker lists the fake devices and switches the camera', async () => {
    await host.page.waitForSelector('#call-devices:not([hidden])')
    await host.page.waitForSelector('#call-cam option', { state: 'attached' })
    const cams = await host.page.$$eval('#call-cam option', (o) => o.map((x) => x.value))
    assert.ok(cams.length >= 1, JSON.stringify(cams))
    const before = await host.page.evaluate(() => window.arena.call.cameraTrack.id)
    assert.equal(await host.page.evaluate((id) => window.arena.call.setDevice('videoinput', id), cams[cams.length - 1]), true)
    assert.notEqual(await host.page.evaluate(() => window.arena.call.cameraTrack.id), before)
    // replaceTrack, no renegotiation: the candidate keeps decoding on the same connection.
    await grows(cand, (s) => s.peers.Hana.video)
    // A device that is not there: an error that says so, the call goes on.
    assert.equal(await host.page.evaluate(() => window.arena.call.setDevice('videoinput', 'no-such-camera')), false)
    await host.page.waitForSelector('#call-error:not([hidden])')
    assert.match(await host.page.textContent('#call-error'), /camera/)
    await grows(cand, (s) => s.peers.Hana.video)
  })

  await t.test('ICE restart (the restart method and the online event) keeps the video flowing', async () => {
    const before = await Promise.all([host, cand].map(stats))
    await host.page.evaluate(() => window.arena.call.restart())
    await waitFor(async () => {
      const now = await Promise.all([host, cand].map(stats))
      return now[0].peers.Cole.ufrag !== before[0].peers.Cole.ufrag && now[1].peers.Hana.ufrag !== before[1].peers.Hana.ufrag &&
        now.every((s) => ['Cole', 'Hana'].every((n) => !s.peers[n] || s.peers[n].state === 'connected'))
    }, { timeoutMs: 30_000, what: async () => JSON.stringify(await Promise.all([host, cand].map(stats))) })
    // The same connections (the same DTLS peers), new ICE credentials.
    const after = await Promise.all([host, cand].map(stats))
    assert.equal(after[0].peers.Cole.fingerprint, before[0].peers.Cole.fingerprint)
    assert.equal(after[1].peers.Hana.fingerprint, before[1].peers.Hana.fingerprint)
    assert.ok(after[0].stats.offers + after[1].stats.offers > before[0].stats.offers + before[1].stats.offers)
    await grows(host, (s) => s.peers.Cole.video)
    await grows(cand, (s) => s.peers.Hana.video)
    // The network came back: the candidate's page restarts ICE by itself.
    const ufrag = after[1].peers.Hana.ufrag
    await cand.page.evaluate(() => window.dispatchEvent(new Event('online')))
    await waitFor(async () => (await stats(cand)).peers.Hana.ufrag !== ufrag, { timeoutMs: 30_000, what: async () => JSON.stringify(await stats(cand)) })
    await grows(host, (s) => s.peers.Cole.video)
    await grows(cand, (s) => s.peers.Hana.video)
  })

  await t.test('screen share replaces the camera and goes back to it when the share ends', async () => {
    const sending = () => host.page.evaluate(() => {
      const call = window.arena.call
      const p = [...call.peers.values()][0]
      const id = p.tx.video.sender.track?.id
      return id === call.cameraTrack?.id ? 'camera' : id && id === call.screenTrack?.id ? 'screen' : String(id)
    })
    const fp = (await stats(cand)).peers.Hana.fingerprint
    await host.page.click('#call-share')
    // replaceTrack resolves a moment later; the button says so once it has.
    await host.page.waitForFunction(() => document.querySelector('#call-share').textContent === 'Stop sharing', null, { timeout: 20_000 })
    assert.equal(await sending(), 'screen')
    await grows(cand, (s) => s.peers.Hana.video)
    // The browser's "Stop sharing": the track ends, the camera comes back.
    await host.page.evaluate(() => window.arena.call.screenTrack.dispatchEvent(new Event('ended')))
    await host.page.waitForFunction(() => document.querySelector('#call-share').textContent === 'Share screen')
    assert.equal(await sending(), 'camera')
    await grows(cand, (s) => s.peers.Hana.video)
    assert.equal((await stats(cand)).peers.Hana.fingerprint, fp, 'no new connection')
  })

  await t.test('a connection closed under a page comes back by itself', async () => {
    await cand.page.evaluate(() => {
      window.__closed = new Set()
      for (const p of window.arena.call.peers.values()) { window.__closed.add(p.pc); p.pc.close() }
    })
    await waitFor(async () => {
      const [h, c] = await Promise.all([host, cand].map(stats))
      const fresh = await cand.page.evaluate(() => [...window.arena.call.peers.values()].every((p) => p.pc && !window.__closed.has(p.pc)))
      return fresh && c.peers.Hana?.state === 'connected' && h.peers.Cole?.state === 'connected'
    }, { timeoutMs: 60_000, what: async () => JSON.stringify(await Promise.all([host, cand].map(stats))) })
    await grows(host, (s) => s.peers.Cole.video)
    await grows(cand, (s) => s.peers.Hana.video)
  })

  await t.test('garbage and forged call messages are ignored; the call goes on', async () => {
    const [h, c] = await Promise.all([host, cand].map(stats))
    const answer = await cand.page.evaluate(async ({ url, token, room, ids: [hana, cole] }) => {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/signal?token=${encodeURIComponent(token)}`)
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
      const got = []
      ws.onmessage = (e) => got.push(JSON.parse(e.data))
      const pub = (data) => ws.send(JSON.stringify({ type: 'publish', topic: room, data }))
      ws.send(JSON.stringify({ type: 'subscribe', topics: [room] }))
      // The largest id there is: between media peers the smaller offers, so never this one
      // (and the node may rewrite a hello's role to the token's: host).
      const me = 'f'.repeat(32)
      pub({ type: 'arena-call-hello', from: me, role: 'observer', name: 'mallory', media: true })
      pub({ type: 'arena-call-offer', from: me, to: hana, sdp: 'v=0\r\nan observer may not offer\r\n' })
      pub({ type: 'arena-call-offer', from: me, to: cole, sdp: 'x'.repeat(60_000) })
      pub({ type: 'arena-call-answer', from: me, to: hana, sdp: 'v=0\r\nnobody asked\r\n' })
      pub({ type: 'arena-call-ice', from: me, to: hana, candidate: { candidate: 42 } })
      pub({ type: 'arena-call-ice', from: me, to: cole, candidate: 'nonsense' })
      pub({ type: 'arena-call-hello', from: me, role: 'king', name: 'x' })
      pub({ type: 'arena-call-offer', from: me, sdp: 'v=0\r\nno to\r\n' })
      pub({ type: 'arena-call-bye', from: me })
      // Under another peer's id: the node binds `from` to the connection that used it first.
      pub({ type: 'arena-call-bye', from: hana })
      await new Promise((resolve) => { ws.onmessage = (e) => { got.push(JSON.parse(e.data)); if (got.at(-1).type === 'pong') resolve() }; ws.send(JSON.stringify({ type: 'ping' })) })
      ws.close()
      return got
    }, { url: server.url, token: created.tokens.host, room: created.room, ids: [h.peerId, c.peerId] })
    assert.ok(answer.some((m) => m.type === 'error' && /from/.test(m.reason)), JSON.stringify(answer))
    await waitFor(async () => {
      const [h2, c2] = await Promise.all([host, cand].map(stats))
      return h2.stats.refused > h.stats.refused && h2.stats.malformed > h.stats.malformed && c2.stats.malformed > c.stats.malformed
    }, { what: async () => JSON.stringify(await Promise.all([host, cand].map(stats))) })
    // Nobody spoke for Hana: Cole still has her, and her video.
    await grows(cand, (s) => s.peers.Hana.video)
    await grows(host, (s) => s.peers.Cole.video)
  })

  await t.test('an observer receives both participants and never asks for a camera', async () => {
    const olga = await open('observer', 'Olga')
    await receives(olga, 'Hana')
    await receives(olga, 'Cole')
    const s = await stats(olga)
    assert.equal(s.gum, 0, 'getUserMedia was called on the observer page')
    for (const n of ['Hana', 'Cole']) assert.equal(s.peers[n].outbound, 0, JSON.stringify(s))
    await olga.page.waitForFunction(() => document.querySelectorAll('.tile').length === 2 && !document.querySelector('.tile.local'))
    assert.equal(await olga.page.isVisible('#call-mute'), false)
    // The writers know it as receive-only and get nothing from it.
    for (const p of [host, cand]) {
      const o = (await stats(p)).peers.Olga
      assert.equal(o.media, false)
      assert.equal(o.role, 'observer')
      assert.equal(o.video + o.audio, 0, JSON.stringify(o))
    }

    // A hostile observer: claims to be a media-sending host, then offers to Hana. The node
    // stamps its hello with its real role (receive-only) and refuses the offer.
    const [h, c] = await Promise.all([host, cand].map(stats))
    const got = await olga.page.evaluate(async ({ url, token, room, hana }) => {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/signal?token=${encodeURIComponent(token)}`)
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
      const got = []
      ws.onmessage = (e) => got.push(JSON.parse(e.data))
      const me = 'e'.repeat(32)
      const pub = (data) => ws.send(JSON.stringify({ type: 'publish', topic: room, data: { from: me, ...data } }))
      ws.send(JSON.stringify({ type: 'subscribe', topics: [room] }))
      pub({ type: 'arena-call-hello', role: 'host', name: 'Mallory', media: true })
      pub({ type: 'arena-call-offer', to: hana, sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' })
      pub({ type: 'arena-call-offer', sdp: 'v=0\r\n' })
      await new Promise((resolve) => setTimeout(resolve, 1000))
      pub({ type: 'arena-call-bye' })
      await new Promise((resolve) => { ws.onmessage = (e) => { got.push(JSON.parse(e.data)); if (got.at(-1).type === 'pong') resolve() }; ws.send(JSON.stringify({ type: 'ping' })) })
      ws.close()
      return got
    }, { url: server.url, token: created.tokens.observer, room: created.room, hana: h.peerId })
    const errors = got.filter((m) => m.type === 'error')
    assert.ok(errors.length >= 2 && errors.every((e) => /observer|read-only/.test(e.reason)), JSON.stringify(got))
    // Hana knew Mallory only as a receive-only observer (she offered to it, send-only) and never got its offer.
    await waitFor(async () => !(await stats(host)).peers.Mallory)
    const [h2, c2] = await Promise.all([host, cand].map(stats))
    assert.equal(h2.stats.refused, h.stats.refused)
    assert.equal(c2.stats.refused, c.stats.refused)
    assert.ok(h2.stats.offers > h.stats.offers, 'Hana offered to the receive-only newcomer')
    await grows(olga, (s) => s.peers.Hana.video)
    await grows(cand, (s) => s.peers.Hana.video)
    await olga.context.close()
  })

  let dana = null
  await t.test('a page denied the camera says so and still receives the call', async () => {
    // Cole leaves (a bye: his tile goes); Dana joins as the candidate, permission denied.
    await cand.context.close()
    await host.page.waitForFunction(() => !document.querySelector('.tile[data-role="candidate"]'), null, { timeout: 20_000 })
    dana = await open('candidate', 'Dana', { deny: true })
    await dana.page.waitForSelector('#call-error:not([hidden])')
    assert.match(await dana.page.textContent('#call-error'), /[Pp]ermission .* denied.*still see and hear/)
    assert.equal(await dana.page.getAttribute('#call-error', 'data-code'), 'permission')
    await dana.page.waitForSelector('.tile.local.no-media')
    assert.equal(await dana.page.isDisabled('#call-mute'), true)
    await receives(dana, 'Hana')
    const s = await stats(dana)
    assert.equal(s.gum, 1)
    assert.equal(s.peers.Hana.outAudio + s.peers.Hana.outVideo, 0, JSON.stringify(s))
    assert.equal((await stats(host)).peers.Dana.video, 0)
    await dana.page.locator('#call').screenshot({ path: join(artifactsDir, 'call-denied.png') })
  })

  await t.test('a member the host removes loses the call; the others connect again without it', async () => {
    const oscar = await open('observer', 'Oscar')
    await receives(oscar, 'Hana')
    const key = await host.page.evaluate(() => window.arena.session.participants().find((m) => m.name === 'Dana').key)
    await host.page.evaluate((k) => window.arena.session.revoke(k), key)
    // The node closes Dana's signaling for good; the host dropped every connection (call
    // peer ids are not member keys) and signaled afresh: Oscar is back, Dana is not.
    await dana.page.waitForFunction(() => window.arena.call.status === 'denied', null, { timeout: 20_000 })
    await waitFor(async () => {
      const h = await stats(host)
      return !h.peers.Dana && h.peers.Oscar?.state === 'connected'
    }, { timeoutMs: 30_000, what: async () => JSON.stringify(await stats(host)) })
    await receives(oscar, 'Hana', { audio: false })
    await settles(dana, (s) => s.peers.Hana?.video ?? -1)
    assert.equal(await host.page.locator('.tile[data-role="candidate"]').count(), 0)
    await Promise.all([oscar.context.close(), dana.context.close()])
  })

  assert.deepEqual(problems, [])
})
