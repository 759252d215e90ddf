// Directory users' real names in the room: the node's signed profile records
// (GET /api/rooms/{room}/profiles, any member's token), each checked with arena-web's
// verifySignature against the node key of GET /api/peers before it is shown. A record that
// does not verify, or names another room, is dropped. Polled (every 3 s; `?profilesPoll=MS`
// for tests): see docs/decisions/user-profiles-off-the-document.md.
import { verifySignature } from '/pkg/index.js'

const DOMAIN = 'arena-profile/1\n'
const ROLES = { host: 'interviewer', candidate: 'candidate' }

const hexBytes = (h) => /^([0-9a-f]{2})*$/i.test(h ?? '') ? Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16)) : null

/** The records of `profiles` that `nodeKey` signed for `roomId`, parsed. */
export function verified (profiles, nodeKey, roomId) {
  const out = []
  for (const p of Array.isArray(profiles) ? profiles : []) {
    const sig = hexBytes(p?.signature)
    if (typeof p?.record !== 'string' || !sig || sig.length !== 64) continue
    if (!verifySignature(nodeKey, new TextEncoder().encode(DOMAIN + p.record), sig)) continue
    let rec
    try { rec = JSON.parse(p.record) } catch { continue }
    if (rec?.v !== 1 || rec.room !== roomId || typeof rec.name !== 'string') continue
    out.push(rec)
  }
  return out
}

function box () {
  let ul = document.getElementById('profiles')
  if (ul) return ul
  ul = document.createElement('ul')
  ul.id = 'profiles'
  ul.className = 'people profiles'
  ul.title = 'Names from the user directory, signed by the node'
  document.getElementById('people')?.after(ul)
  return ul
}

function render (records) {
  const ul = box()
  ul.replaceChildren()
  for (const r of records.sort((a, b) => a.role.localeCompare(b.role))) {
    const li = document.createElement('li')
    li.dataset.role = r.role
    li.dataset.user = r.user
    if (typeof r.avatarUrl === 'string' && /^https?:\/\//.test(r.avatarUrl)) {
      const img = document.createElement('img')
      img.src = r.avatarUrl
      img.alt = ''
      img.width = img.height = 20
      img.referrerPolicy = 'no-referrer'
      li.append(img, ' ')
    }
    li.append(`${r.name} (${ROLES[r.role] ?? r.role}) ✓`)
    ul.append(li)
  }
}

/** Fetches, checks and shows the room's profiles now and then every poll interval. */
export function wireProfiles (roomId, token) {
  const poll = Number(new URLSearchParams(location.search).get('profilesPoll')) || 3_000
  let nodeKey = null
  const tick = async () => {
    // Offline, a fetch only fails (and the browser logs it as an error): wait for the next tick.
    if (!navigator.onLine) return
    try {
      nodeKey ??= (await (await fetch('/api/peers')).json()).nodeKey
      const res = await fetch(`/api/rooms/${roomId}/profiles`, { headers: { authorization: `Bearer ${token}` } })
      if (!res.ok) return
      const body = await res.json()
      render(verified(body.profiles, nodeKey, roomId))
    } catch (e) {
      console.warn('profiles:', e.message ?? e)
    }
  }
  tick()
  setInterval(tick, Math.max(250, poll))
}
