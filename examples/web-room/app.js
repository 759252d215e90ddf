// The InterviewArena web room: create a room (/), join one (/room/{id}#token=...).
// Query options: ?name=... joins without asking, ?editor=textarea|codemirror|monaco,
// ?mesh=0 turns off the WebRTC mesh to the room's other browsers (on by default), ?call=1
// joins the call with the page.
import { init, ArenaSession, bindEditor, bindFile, textareaAdapter, monacoAdapter } from '/pkg/index.js'
import { wireCall } from './call-ui.js'
import { wireProfiles } from './profiles.js'

const $ = (id) => document.getElementById(id)
const LANGUAGES = ['python', 'javascript', 'typescript', 'java', 'cpp', 'c', 'csharp', 'go', 'rust', 'kotlin', 'ruby', 'swift', 'sql']
const COLORS = ['#e11d48', '#2563eb', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d']
const params = new URLSearchParams(location.search)

for (const sel of document.querySelectorAll('select.languages')) {
  for (const l of LANGUAGES) sel.append(new Option(l, l))
}

function setStatus (status, text) {
  $('status').dataset.status = status
  $('status').textContent = text
}

// ---- home: create a room ----------------------------------------------------------------

function home () {
  $('home').hidden = false
  const form = $('create-form')
  form.elements.name.value = localStorage.getItem('arena:name') ?? 'Interviewer'
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    $('create-error').textContent = ''
    const title = form.elements.title.value
    const language = form.elements.language.value
    // A node reachable from elsewhere creates rooms only with its operator token (asked for
    // after a 401, kept for this tab only).
    const operator = form.elements.operator.value.trim() || sessionStorage.getItem('arena:operator')
    const headers = { 'content-type': 'application/json' }
    if (operator) headers.authorization = `Bearer ${operator}`
    try {
      const res = await fetch('/api/rooms', { method: 'POST', headers, body: JSON.stringify({ title, language }) })
      const body = await res.json().catch(() => ({}))
      if (res.status === 401) {
        sessionStorage.removeItem('arena:operator')
        $('operator').hidden = false
        form.elements.operator.focus()
        throw new Error(`${body.error ?? 'the node wants its operator token'}. Paste the operator token and try again.`)
      }
      if (!res.ok) throw new Error(body.error ?? `the node answered ${res.status}`)
      if (operator) sessionStorage.setItem('arena:operator', operator)
      localStorage.setItem('arena:name', form.elements.name.value)
      localStorage.setItem(`arena:invites:${body.room}`, JSON.stringify(body.links))
      location.href = `/room/${body.room}#token=${body.tokens.host}`
    } catch (e) {
      $('create-error').textContent = `Could not create the room: ${e.message}`
    }
  })
}

// ---- room -------------------------------------------------------------------------------

function roomError (text) {
  const el = $('room-error')
  el.textContent = text
  el.hidden = false
}

/** When an invite expired, from a refusal ("... grant expired at {unix secs} (now ...)":
 *  the WASM room's and the node's words), or null. */
function expiredAt (reason) {
  const m = /expired at (\d+)/.exec(String(reason ?? ''))
  return m ? new Date(Number(m[1]) * 1000) : null
}

const ASK_HOST = 'Ask the host for a new invite link.'

/** Whether a refusal says a host removed us (the node's close reason for a revoked member). */
const removedByHost = (reason) => /removed from the room/.test(String(reason ?? ''))

async function room (roomId) {
  $('room').hidden = false
  const token = new URLSearchParams(location.hash.slice(1)).get('token')
  if (!token) return roomError('This link has no invite token (it belongs after #token= in the link).')
  let name = params.get('name') ?? localStorage.getItem('arena:name')
  if (!name) {
    $('join').hidden = false
    name = await new Promise((resolve) => {
      $('join-form').addEventListener('submit', (ev) => {
        ev.preventDefault()
        resolve($('join-form').elements.name.value)
      })
    })
    localStorage.setItem('arena:name', name)
    $('join').hidden = true
  }
  await init()
  const color = COLORS[Math.floor(Math.random() * COLORS.length)]
  let session
  try {
    session = new ArenaSession({ server: location.origin, room: roomId, token, name, color, mesh: params.get('mesh') !== '0' })
  } catch (e) {
    const reason = e.message ?? String(e)
    const expired = expiredAt(reason)
    setStatus('denied', expired ? 'invite expired' : 'invite refused')
    return roomError(expired
      ? `This invite link expired on ${expired.toLocaleString()}. ${ASK_HOST}`
      : `This invite is not valid for this room: ${reason}`)
  }
  $('layout').hidden = false
  const role = session.role
  $('role').hidden = false
  $('role').textContent = role
  const readOnly = role === 'observer'

  const { adapter, kind } = await makeEditor(readOnly)
  $('editor-kind').textContent = kind
  bindEditor(session, adapter)
  window.arena = { session, adapter, editorKind: kind, editorText: () => adapter.getText() }

  // Leaving: tell the mesh peers and the node now rather than letting them time out.
  addEventListener('pagehide', (ev) => { if (!ev.persisted) session.destroy() })
  wireStatus(session)
  wireToolbar(session, readOnly, roomId, token)
  wireFiles(session, readOnly)
  wireInvite(roomId, role)
  wireAnalyzer(session, roomId, token)
  wireCall(session, { roomId, token, params })
  wireProfiles(roomId, token) // directory users' names (src/users, docs/users.md)
  const refresh = () => { renderMeta(session); renderPeople(session); renderConsensus(session); renderVersions(session); renderRuns(session); renderAnalysis(session) }
  session.addEventListener('update', refresh)
  session.addEventListener('presence', () => renderPeople(session))
  refresh()
}

function wireStatus (session) {
  // The node refused our token (no retry): say why in the status and above the editor;
  // whatever is typed stays in the editor (and reaches direct peers while the mesh is up).
  const denied = (reason) => {
    if (removedByHost(reason)) return removed()
    const expired = expiredAt(reason)
    setStatus('denied', expired ? 'invite expired, refused by the node: your edits stay on this page' : `refused by the node: ${reason}`)
    roomError(expired
      ? `Your invite expired on ${expired.toLocaleString()}: the node no longer accepts it, so your edits stay on this page and no longer reach the node. ${ASK_HOST}`
      : `The node refused this invite (${reason}): your edits stay on this page and no longer reach the node. ${ASK_HOST}`)
  }
  // A host removed us: the node closed our connection and every replica refuses what we
  // type from now on.
  const removed = () => {
    setStatus('removed', 'removed from the room by the host')
    roomError('The host removed you from this room: the node closed your connection, and what you type from now on reaches nobody.')
  }
  const show = (d) => {
    switch (d.status) {
      case 'online': return setStatus('online', 'online')
      case 'connecting': return setStatus('connecting', 'connecting…')
      case 'offline': return setStatus('offline', `offline${d.retryInMs ? `, retrying in ${Math.ceil(d.retryInMs / 1000)} s` : ''}: your edits are kept and merge on reconnect`)
      case 'denied': return denied(d.reason)
      default: return setStatus('idle', d.status)
    }
  }
  // The node may have answered while the editor loaded: show its reason too.
  show({ status: session.status, reason: session.transport.reason })
  session.addEventListener('status', (e) => show(e.detail))
  const mesh = $('mesh')
  const showMesh = () => {
    const n = session.meshPeers()
    const signaling = session.meshStatus
    mesh.hidden = false
    mesh.dataset.status = session.meshStatus
    mesh.dataset.peers = String(n)
    mesh.textContent = session.meshStatus === 'off'
      ? 'direct: off'
      : session.meshStatus === 'unsupported'
        ? 'direct: no WebRTC'
        : `direct: ${n} peer${n === 1 ? '' : 's'}${signaling === 'online' ? '' : ` (signaling ${signaling})`}`
    mesh.title = `WebRTC mesh to the other browsers in the room (signaling ${session.meshStatus}); edits also travel this way when the node is unreachable`
  }
  showMesh()
  session.addEventListener('mesh', showMesh)
  session.addEventListener('denied', (e) => {
    const reason = e.detail.reason
    if (removedByHost(reason)) return removed()
    setStatus('denied', expiredAt(reason) ? 'invite expired, refused by the node: your edits stay on this page' : `refused: ${reason}`)
  })
  session.addEventListener('error', (e) => console.warn('arena: a frame could not be processed', e.detail.error))
}

function wireToolbar (session, readOnly, roomId, token) {
  const lang = $('language')
  // `meta` is the host's to write (every replica refuses anyone else's edit there).
  lang.disabled = session.role !== 'host'
  if (lang.disabled && !readOnly) lang.title = 'The host sets the language'
  lang.addEventListener('change', () => session.setMeta('language', lang.value))
  $('run').disabled = readOnly
  $('stdin').disabled = readOnly
  if (readOnly) $('run').title = 'Observers watch runs; the host and the candidate run the code'
  // The node runs the room's code and writes the run into the room as it goes: the output
  // panel shows it from the document (renderRuns), so the other participant sees it too.
  // The answer only matters when the node refused (busy, a run already going on, ...).
  $('run').addEventListener('click', async () => {
    $('run').disabled = true
    $('run-status').textContent = 'starting…'
    try {
      const res = await fetch(`/api/rooms/${roomId}/runs`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ stdin: $('stdin').value })
      })
      const body = await res.json().catch(() => ({}))
      if (!res.ok) {
        $('run-status').textContent = `not run: ${body.error ?? res.status}`
        $('run-status').dataset.refused = String(res.status)
      } else {
        delete $('run-status').dataset.refused
        renderRuns(session)
      }
    } catch (e) {
      $('run-status').textContent = `not run: ${e.message ?? e}`
    } finally {
      $('run').disabled = false
    }
  })
  $('save-version').disabled = readOnly
  $('save-version').addEventListener('click', () => {
    const n = session.versions().length + 1
    session.createVersion(`Saved by ${session.name} (#${n})`)
  })
  $('vote-yes').disabled = readOnly
  $('vote-no').disabled = readOnly
  $('vote-yes').addEventListener('click', () => session.vote(true))
  $('vote-no').addEventListener('click', () => session.vote(false))
  $('restore').disabled = readOnly
  $('restore').addEventListener('click', () => {
    const id = $('diff-view').dataset.version
    if (id) session.restore(id)
  })
}

/** The main file's name by the language's convention (what the node's executor calls it). */
const MAIN_FILE = { python: 'main.py', javascript: 'main.js', typescript: 'main.ts', java: 'Main.java', c: 'main.c', cpp: 'main.cpp', go: 'main.go', rust: 'main.rs', ruby: 'main.rb' }

/** The file tabs: the code (the main file, in the room's editor) and the room's extra files
 *  (each in a textarea bound with bindFile). Any participant but an observer adds and removes
 *  files; a run sends them all. Files added, removed or edited elsewhere show at once. */
function wireFiles (session, readOnly) {
  const fileHost = $('file-editor')
  const ta = fileHost.querySelector('textarea')
  ta.readOnly = readOnly
  const adapter = textareaAdapter(ta)
  let current = ''
  let unbind = null
  const tab = (name, label) => {
    const b = document.createElement('button')
    b.className = 'tab'
    b.setAttribute('role', 'tab')
    b.dataset.file = name
    b.textContent = label
    b.setAttribute('aria-selected', String(name === current))
    b.addEventListener('click', () => show(name))
    return b
  }
  const render = () => {
    const files = session.files()
    if (current && !files.includes(current)) return show('')
    const main = MAIN_FILE[session.meta().language] ?? 'main'
    $('file-tab-list').replaceChildren(tab('', main), ...files.map((f) => tab(f, f)))
    $('remove-file').hidden = readOnly || !current
  }
  const show = (name) => {
    unbind?.()
    unbind = null
    current = name
    $('editor').hidden = Boolean(name)
    fileHost.hidden = !name
    if (name) unbind = bindFile(session, adapter, name)
    render()
  }
  for (const id of ['new-file', 'add-file']) $(id).disabled = readOnly
  const add = () => {
    const name = $('new-file').value.trim()
    $('file-error').textContent = ''
    if (!name) return
    try {
      session.addFile(name)
      $('new-file').value = ''
      show(name)
    } catch (e) {
      $('file-error').textContent = `Not added: ${e.message ?? e}`
    }
  }
  $('add-file').addEventListener('click', add)
  $('new-file').addEventListener('keydown', (e) => { if (e.key === 'Enter') add() })
  $('remove-file').addEventListener('click', () => {
    if (!current) return
    try {
      session.removeFile(current)
    } catch (e) {
      $('file-error').textContent = `Not removed: ${e.message ?? e}`
    }
    show('')
  })
  session.addEventListener('update', render)
  render()
  window.arena.showFile = show
}

function wireInvite (roomId, role) {
  const links = JSON.parse(localStorage.getItem(`arena:invites:${roomId}`) ?? 'null')
  if (role !== 'host' || !links) return
  $('invite').hidden = false
  $('invite-candidate').value = links.candidate
  $('invite-observer').value = links.observer
  $('copy-invite').addEventListener('click', () => navigator.clipboard?.writeText(links.candidate))
}

let editorLanguage = null
let setEditorLanguage = () => {}

function renderMeta (session) {
  const meta = session.meta()
  $('room-title').textContent = meta.title || 'Interview room'
  if (meta.language && meta.language !== editorLanguage) {
    editorLanguage = meta.language
    $('language').value = meta.language
    setEditorLanguage(meta.language)
  }
}

function renderPeople (session) {
  const ul = $('people')
  ul.replaceChildren()
  const online = session.presence()
  const participants = session.participants()
  const me = session.room.publicKey()
  const isHost = session.role === 'host'
  // The host may remove a member (a signed revocation every replica enforces; the node closes
  // the member's connections): a button by each participant but itself.
  const removeButton = (m) => {
    const b = document.createElement('button')
    b.className = 'remove'
    b.textContent = 'Remove'
    b.dataset.key = m.key
    b.dataset.name = m.name
    b.title = `Remove ${m.name} from the room`
    b.addEventListener('click', () => {
      if (!confirm(`Remove ${m.name} (${m.role}) from the room? The node closes their connection and nothing they write is accepted any more. This cannot be undone.`)) return
      try {
        session.revoke(m.key)
      } catch (e) {
        roomError(`Could not remove ${m.name}: ${e.message ?? e}`)
      }
    })
    return b
  }
  const item = (m, li) => {
    if (m?.revoked) {
      li.classList.add('removed')
      li.append(' (removed)')
    } else if (m && isHost && m.key !== me) {
      li.append(removeButton(m))
    }
    ul.append(li)
  }
  for (const p of online) {
    const li = document.createElement('li')
    const dot = document.createElement('span')
    dot.className = 'dot'
    dot.style.background = /^#[0-9a-f]{3,8}$/i.test(p.color) ? p.color : '#888'
    li.append(dot, `${p.name || 'anonymous'}${p.local ? ' (you)' : ''}`)
    item(p.local ? null : participants.find((m) => m.name === p.name && m.key !== me), li)
  }
  for (const m of participants.filter((m) => !online.some((p) => p.name === m.name))) {
    const li = document.createElement('li')
    li.className = m.revoked ? 'hint removed' : 'hint'
    li.textContent = `${m.name} (${m.role}, ${m.revoked ? 'removed' : 'away'})`
    item(m.revoked ? null : m, li)
  }
}

function renderConsensus (session) {
  const c = session.consensus()
  const mark = (r) => `${r} ${c.satisfied.includes(r) ? '✓' : '✗'}`
  const el = $('consensus')
  el.dataset.enabled = String(c.enabled)
  el.textContent = `Round ${c.round}: ${c.required.map(mark).join(', ')}, ${c.enabled ? 'analyzer enabled' : 'analyzer disabled'}`
  $('analyze').disabled = analyzing || !c.enabled
}

// ---- the analyzer -------------------------------------------------------------------------

let analyzing = false
/** Highlights finding lines in the editor (Monaco: decorations; other editors: none). */
let highlightLines = () => {}

/** The host's Analyze button: the node checks the signed votes again, runs the analyzer and
 *  writes its result into the room (shown from the document, on every page). */
function wireAnalyzer (session, roomId, token) {
  if (session.role !== 'host') return
  const button = $('analyze')
  button.hidden = false
  button.addEventListener('click', async () => {
    analyzing = true
    button.disabled = true
    $('analyze-error').hidden = true
    try {
      const res = await fetch(`/api/rooms/${roomId}/analyze`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
      const body = await res.json().catch(() => ({}))
      if (!res.ok) throw new Error(body.error ?? `the node answered ${res.status}`)
    } catch (e) {
      $('analyze-error').textContent = `The analyzer did not run: ${e.message ?? e}`
      $('analyze-error').hidden = false
    } finally {
      analyzing = false
      renderConsensus(session)
    }
  })
}

/** An analysis record's findings: JSON objects (a summary, then findings), or plain text. */
function parseAnalysis (record) {
  const out = { summary: '', model: '', findings: [] }
  for (const f of record.findings ?? []) {
    let v = null
    try { v = JSON.parse(f) } catch {}
    if (v?.kind === 'summary') {
      out.summary = String(v.summary ?? '')
      out.model = String(v.model ?? '')
    } else if (v?.kind === 'finding') {
      const start = Math.max(1, Number(v.lineStart) || 1)
      out.findings.push({ start, end: Math.max(start, Number(v.lineEnd) || start), severity: String(v.severity ?? 'info'), rule: String(v.rule ?? ''), message: String(v.message ?? '') })
    } else {
      out.findings.push({ start: 0, end: 0, severity: 'info', rule: '', message: String(f) })
    }
  }
  return out
}

let shownAnalysis = null

function renderAnalysis (session) {
  const all = session.analysis()
  const record = all[all.length - 1]
  if (!record) return
  const key = `${record.round}:${record.createdAt}`
  if (key === shownAnalysis) return
  shownAnalysis = key
  const a = parseAnalysis(record)
  const panel = $('analysis')
  panel.hidden = false
  panel.dataset.round = String(record.round)
  panel.dataset.backend = record.backend
  $('analysis-backend').textContent = `Round ${record.round}, answered by ${record.backend}${a.model && !record.backend.includes(a.model) ? ` (${a.model})` : ''}`
  $('analysis-summary').textContent = a.summary
  const ul = $('findings')
  ul.replaceChildren()
  for (const f of a.findings) {
    const li = document.createElement('li')
    li.className = `finding ${f.severity}`
    li.dataset.lines = `${f.start}-${f.end}`
    li.textContent = `${f.start ? `L${f.start}${f.end > f.start ? `-${f.end}` : ''} ` : ''}${f.severity}${f.rule ? ` ${f.rule}` : ''}: ${f.message}`
    ul.append(li)
  }
  if (!a.findings.length) ul.append(Object.assign(document.createElement('li'), { className: 'hint', textContent: 'No findings.' }))
  highlightLines(a.findings.filter((f) => f.start > 0))
}

function renderVersions (session) {
  const ol = $('versions')
  const selected = $('diff-view').dataset.version
  ol.replaceChildren()
  for (const v of session.versions()) {
    const li = document.createElement('li')
    li.textContent = `${v.label} · ${v.cause} · ${new Date(v.at).toLocaleTimeString()}`
    li.dataset.version = v.id
    li.dataset.cause = v.cause
    li.classList.toggle('run', v.cause === 'run')
    li.classList.toggle('selected', v.id === selected)
    if (v.cause === 'run') li.title = 'Made by a successful run'
    li.addEventListener('click', () => { $('diff-view').dataset.version = v.id; renderVersions(session) })
    ol.append(li)
  }
  if (selected) renderDiff(session, selected)
}

function renderDiff (session, id) {
  $('diff-view').hidden = false
  $('diff-title').textContent = `${id} → now`
  const pre = $('diff')
  pre.replaceChildren()
  try {
    for (const l of session.diff(id, null)) {
      const span = document.createElement('span')
      span.className = l.kind
      span.textContent = (l.kind === 'added' ? '+ ' : l.kind === 'removed' ? '- ' : '  ') + l.text.replace(/\n$/, '')
      pre.append(span, '\n')
    }
    // The extra files that differ, each under its name.
    for (const f of session.fileDiffs(id, null)) {
      if (f.lines.every((l) => l.kind === 'same')) continue
      const head = document.createElement('span')
      head.className = 'file'
      head.textContent = `── ${f.name} ──`
      pre.append(head, '\n')
      for (const l of f.lines) {
        const span = document.createElement('span')
        span.className = l.kind
        span.textContent = (l.kind === 'added' ? '+ ' : l.kind === 'removed' ? '- ' : '  ') + l.text.replace(/\n$/, '')
        pre.append(span, '\n')
      }
    }
  } catch (e) {
    pre.textContent = `No diff: ${e.message ?? e}`
  }
}

/** The room's latest run, as the document holds it: while it runs, `running` records that
 *  each carry the output since the previous one; then one final record in their place. */
function latestRun (session) {
  const runs = session.runs()
  if (!runs.length) return null
  const id = runs[runs.length - 1].id
  const mine = runs.filter((r) => r.id === id)
  const final = mine.find((r) => r.status !== 'running')
  if (final) return final
  return { ...mine[0], stdout: mine.map((r) => r.stdout).join(''), stderr: mine.map((r) => r.stderr).join('') }
}

function renderRuns (session) {
  const r = latestRun(session)
  if (!r) return
  const out = $('output')
  out.dataset.run = r.id
  out.dataset.status = r.status
  out.textContent = r.stdout + (r.stderr ? (r.stdout && !r.stdout.endsWith('\n') ? '\n' : '') + r.stderr : '')
  const what = r.status === 'running'
    ? 'running…'
    : r.status === 'finished' ? `exit ${r.exitCode ?? '-'}` : r.status.replace('_', ' ')
  $('run-status').textContent = `${r.language} · ${what}${r.status === 'running' ? '' : ` · ${r.wallMs} ms`}`
  $('run-status').dataset.status = r.status
}

// ---- editors ----------------------------------------------------------------------------

async function makeEditor (readOnly) {
  const host = $('editor')
  const want = params.get('editor') ?? 'monaco'
  if (want === 'monaco') {
    try {
      const monaco = await loadMonaco()
      const editor = monaco.editor.create(host, { value: '', language: 'python', automaticLayout: true, readOnly, minimap: { enabled: false }, fontSize: 13 })
      setEditorLanguage = (l) => monaco.editor.setModelLanguage(editor.getModel(), l)
      const decorations = editor.createDecorationsCollection([])
      highlightLines = (findings) => decorations.set(findings.map((f) => ({
        range: new monaco.Range(f.start, 1, f.end, 1),
        options: { isWholeLine: true, className: `finding-line ${f.severity}`, hoverMessage: { value: `${f.severity} ${f.rule}: ${f.message}` } }
      })))
      window.monacoEditor = editor
      // Monaco fetches its icon font when a widget first shows an icon (the suggest list as
      // you type): fetch it now, so a page that goes offline later still draws its icons.
      document.fonts?.load('13px codicon').catch(() => {})
      return { adapter: monacoAdapter(editor, monaco), kind: 'Monaco' }
    } catch (e) {
      console.warn('Monaco unavailable, using a textarea:', e)
    }
  }
  if (want === 'codemirror') {
    try {
      const cm = await import('/vendor/codemirror.js')
      const adapter = cm.codemirrorAdapter()
      const view = new cm.EditorView({ parent: host, extensions: [adapter.extension, cm.EditorState.readOnly.of(readOnly)] })
      adapter.attach(view)
      window.cmView = view
      return { adapter, kind: 'CodeMirror 6' }
    } catch (e) {
      console.warn('CodeMirror unavailable, using a textarea:', e)
    }
  }
  const ta = document.createElement('textarea')
  ta.spellcheck = false
  ta.readOnly = readOnly
  host.append(ta)
  return { adapter: textareaAdapter(ta), kind: 'textarea' }
}

function loadMonaco () {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Monaco did not load in 20 s')), 20_000)
    window.MonacoEnvironment = { getWorkerUrl: () => '/vendor/monaco-worker.js' }
    const script = document.createElement('script')
    script.src = '/vendor/monaco/vs/loader.js'
    script.onerror = () => { clearTimeout(timer); reject(new Error('no Monaco at /vendor/monaco')) }
    script.onload = () => {
      window.require.config({ paths: { vs: '/vendor/monaco/vs' } })
      window.require(['vs/editor/editor.main'], () => { clearTimeout(timer); resolve(window.monaco) }, (e) => { clearTimeout(timer); reject(e) })
    }
    document.head.append(script)
  })
}

// ---- route ------------------------------------------------------------------------------

const m = location.pathname.match(/^\/room\/([0-9a-f]{64})\/?$/)
if (m) {
  room(m[1]).catch((e) => { roomError(`Something went wrong: ${e.message ?? e}`); setStatus('error', 'error') })
} else if (location.pathname.startsWith('/room/')) {
  $('room').hidden = false
  roomError('This is not a room link: the room id is 64 hex digits.')
} else {
  home()
}
