// The room's "Call" panel: a tile per participant who sends media (host and candidate; our
// own preview muted), mute / camera / screen-share buttons, the device picker, and a status
// line that says what is wrong (permission denied, no camera, the node refused). Observers
// watch receive-only: they never open a camera or a microphone.
// ?call=1 joins the call with the page (the tests do); otherwise the Join button does.
import { Call } from '/pkg/index.js'

const $ = (id) => document.getElementById(id)

/** Wires the Call panel for `session`; returns the Call (also window.arena.call). */
export function wireCall (session, { roomId, token, params }) {
  const observer = session.role === 'observer'
  const call = new Call({ server: location.origin, room: roomId, token, role: session.role, name: session.name })
  if (window.arena) window.arena.call = call
  const panel = $('call')
  const tiles = $('call-tiles')
  const join = $('call-join')
  const status = $('call-status')
  const error = $('call-error')
  join.textContent = observer ? 'Watch the call' : 'Join the call'
  for (const id of ['call-mute', 'call-camera', 'call-share']) $(id).hidden = observer
  $('call-devices').hidden = true

  const say = (text, state = '') => { status.textContent = text; status.dataset.state = state }
  const showError = (msg, code) => {
    error.textContent = msg
    error.dataset.code = code ?? ''
    error.hidden = !msg
  }

  /** peer id ('local' for us) → tile element */
  const byPeer = new Map()
  function tile (id, label, role) {
    let t = byPeer.get(id)
    if (!t) {
      t = document.createElement('figure')
      t.className = 'tile'
      t.dataset.peer = id
      const video = document.createElement('video')
      video.autoplay = true
      video.playsInline = true
      if (id === 'local') { video.muted = true; t.classList.add('local') }
      const cap = document.createElement('figcaption')
      t.append(video, cap)
      tiles.append(t)
      byPeer.set(id, t)
    }
    t.dataset.role = role
    t.querySelector('figcaption').textContent = label
    return t
  }
  const label = (name, role, you) => `${name || 'anonymous'}${you ? ' (you)' : ''} · ${role}`

  function play (video, stream) {
    if (video.srcObject !== stream) video.srcObject = stream
    video.play().catch(() => {
      // No user gesture yet for sound: play muted and let a click unmute.
      if (video.muted) return
      video.muted = true
      video.play().catch(() => {})
      video.title = 'Click to hear this participant'
      video.addEventListener('click', () => { video.muted = false; video.title = '' }, { once: true })
    })
  }

  function renderPeers () {
    const n = [...call.peers.values()]
    const watching = n.filter((p) => !p.media).length
    const inCall = n.filter((p) => p.media).length
    const up = n.filter((p) => p.state === 'connected').length
    if (call.status === 'denied') return say('the node refused the call', 'denied')
    if (call.status !== 'online') return say(`signaling ${call.status}…`, call.status)
    say(`${inCall ? `${inCall} in the call, ${up} connected` : 'waiting for the others'}${watching ? ` · ${watching} watching` : ''}`, up ? 'connected' : 'waiting')
  }

  call.addEventListener('status', renderPeers)
  call.addEventListener('local', (e) => {
    const stream = e.detail.stream
    const video = tile('local', label(session.name, session.role, true), session.role).querySelector('video')
    // Our preview: the screen while sharing, else the camera (a stream of its own, so the
    // microphone never plays back here).
    const shown = new MediaStream([call.screenTrack ?? call.cameraTrack].filter(Boolean))
    play(video, shown)
    byPeer.get('local').classList.toggle('sharing', !!call.screenTrack)
    $('call-share').textContent = call.screenTrack ? 'Stop sharing' : 'Share screen'
    if (stream) refreshDevices()
  })
  call.addEventListener('peer', (e) => {
    const d = e.detail
    if (d.media) tile(d.peer, label(d.name, d.role), d.role).dataset.state = d.state
    renderPeers()
  })
  call.addEventListener('track', (e) => {
    const d = e.detail
    const t = tile(d.peer, label(d.name, d.role), d.role)
    play(t.querySelector('video'), d.stream)
    // The sender muted or turned its camera off: its track stops getting frames.
    if (d.kind === 'video') {
      d.track.onmute = () => t.classList.add('no-video')
      d.track.onunmute = () => t.classList.remove('no-video')
    }
  })
  call.addEventListener('left', (e) => {
    byPeer.get(e.detail.peer)?.remove()
    byPeer.delete(e.detail.peer)
    renderPeers()
  })
  call.addEventListener('error', (e) => showError(e.detail.message, e.detail.code))
  session.addEventListener('revoked', () => call.rejoin('a member was removed'))

  async function refreshDevices () {
    const list = await call.devices()
    $('call-devices').hidden = false
    for (const [kind, id, current] of [['audioinput', 'call-mic', call.localStream?.getAudioTracks()[0]], ['videoinput', 'call-cam', call.cameraTrack]]) {
      const sel = $(id)
      const now = current?.getSettings?.().deviceId
      sel.replaceChildren(...list[kind].map((d) => new Option(d.label, d.deviceId, false, d.deviceId === now)))
      sel.disabled = !list[kind].length
      sel.onchange = () => call.setDevice(kind, sel.value)
    }
  }

  $('call-mute').addEventListener('click', () => {
    const muted = !call.muted
    $('call-mute').textContent = muted ? 'Unmute' : 'Mute'
    $('call-mute').setAttribute('aria-pressed', String(muted))
    call.setMuted(muted)
  })
  $('call-camera').addEventListener('click', () => {
    const off = !call.cameraOff
    $('call-camera').textContent = off ? 'Camera on' : 'Camera off'
    $('call-camera').setAttribute('aria-pressed', String(off))
    byPeer.get('local')?.classList.toggle('no-video', off)
    call.setCamera(!off)
  })
  $('call-share').addEventListener('click', () => call.screenTrack ? call.stopShare() : call.shareScreen())

  async function start () {
    join.hidden = true
    $('call-leave').hidden = false
    say(observer ? 'joining (receive-only)…' : 'asking for the camera and microphone…')
    await call.start()
    if (!observer && !call.localStream) {
      // Nothing to send: the tile and the buttons say so (screen sharing still works).
      tile('local', label(session.name, session.role, true), session.role).classList.add('no-video', 'no-media')
      for (const id of ['call-mute', 'call-camera']) {
        $(id).disabled = true
        $(id).title = 'No camera or microphone in use'
      }
    }
    renderPeers()
  }
  join.addEventListener('click', start)
  $('call-leave').addEventListener('click', () => {
    call.leave()
    for (const t of byPeer.values()) t.remove()
    byPeer.clear()
    $('call-leave').hidden = true
    join.hidden = false
    say('left the call')
  })
  addEventListener('pagehide', (ev) => { if (!ev.persisted && !call.stopped) call.leave() })
  panel.hidden = false
  if (params.get('call') === '1') start()
  return call
}
