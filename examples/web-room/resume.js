// The resume page: a resume (PDF or text file, or pasted text) and a job description to
// `POST /api/resume/analyze`; shows the score, the matched skills, the gaps and the three
// questions. A public node wants its operator token (asked for after a 401, kept for this tab).
const $ = (id) => document.getElementById(id)
const form = $('resume-form')

function list (el, items, text) {
  el.replaceChildren(...items.map((x) => Object.assign(document.createElement('li'), { textContent: text(x) })))
  if (!items.length) el.append(Object.assign(document.createElement('li'), { className: 'hint', textContent: 'none' }))
}

function show (r) {
  $('resume-result').hidden = false
  $('score').textContent = String(r.score)
  $('resume-backend').textContent = `Answered by ${r.backend}`
  list($('matched'), r.matched_skills ?? [], (m) => `${m.skill} (${m.importance})${m.evidence ? `: ${m.evidence}` : ''}`)
  list($('gaps'), r.skill_gaps ?? [], (g) => `${g.skill} (${g.importance})`)
  const ol = $('questions')
  ol.replaceChildren()
  for (const q of r.questions ?? []) {
    const li = document.createElement('li')
    li.className = 'question'
    const why = Object.assign(document.createElement('p'), { className: 'hint', textContent: `About ${q.targets}: ${q.why}` })
    li.append(q.question, why)
    ol.append(li)
  }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault()
  $('resume-error').textContent = ''
  const file = form.elements.file.files[0]
  const jd = form.elements.jd.value
  const operator = form.elements.operator.value.trim() || sessionStorage.getItem('arena:operator')
  const headers = operator ? { authorization: `Bearer ${operator}` } : {}
  let body
  if (file) {
    body = new FormData()
    body.append('resume', file, file.name)
    body.append('job_description', jd)
  } else {
    headers['content-type'] = 'application/json'
    body = JSON.stringify({ resume: form.elements.resume.value, job_description: jd })
  }
  $('analyze-resume').disabled = true
  try {
    const res = await fetch('/api/resume/analyze', { method: 'POST', headers, body })
    const r = await res.json().catch(() => ({}))
    if (res.status === 401) {
      sessionStorage.removeItem('arena:operator')
      $('operator').hidden = false
      throw new Error(`${r.error ?? 'the node wants its operator token'}. Paste the operator token and try again.`)
    }
    if (!res.ok) throw new Error(r.error ?? `the node answered ${res.status}`)
    if (operator) sessionStorage.setItem('arena:operator', operator)
    show(r)
  } catch (e) {
    $('resume-error').textContent = `Could not analyze: ${e.message ?? e}`
  } finally {
    $('analyze-resume').disabled = false
  }
})
