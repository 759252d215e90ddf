// The resume page in headless Chromium against the real arena-bootstrap binary (offline
// analyzer): a text resume file and a pasted job description give a score and three questions.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, launchChromium } from './support.mjs'

const RESUME = `Jane Doe, backend engineer
Built a payment service in Rust and Python on PostgreSQL; deployed it on k8s with Docker.
Led a team of four; cut p99 latency by 40% with Redis caching.
`
const JD = `We need a backend engineer. Required: Rust, PostgreSQL, Kubernetes, Kafka.
Nice to have: Go, Terraform.`

test('the resume page', { timeout: 120_000 }, async (t) => {
  const server = await startServer()
  const chromium = await launchChromium()
  t.after(async () => { await chromium.close(); await server.stop() })
  const page = await (await chromium.browser.newContext()).newPage()
  const problems = []
  page.on('pageerror', (e) => problems.push(e.message))
  await page.goto(`${server.url}/resume.html`)
  await page.setInputFiles('input[name=file]', { name: 'resume.txt', mimeType: 'text/plain', buffer: Buffer.from(RESUME) })
  await page.fill('textarea[name=jd]', JD)
  await page.click('#analyze-resume')
  await page.waitForSelector('#resume-result:not([hidden])', { timeout: 30_000 })
  const score = Number(await page.textContent('#score'))
  assert.ok(score >= 0 && score <= 100, `score ${score}`)
  assert.equal(await page.locator('#questions li.question').count(), 3)
  const matched = await page.textContent('#matched')
  assert.match(matched, /Rust/)
  assert.match(matched, /Kubernetes/, 'k8s is Kubernetes')
  assert.match(await page.textContent('#gaps'), /Kafka/)
  assert.match(await page.textContent('#resume-backend'), /offline/)
  assert.equal(await page.textContent('#resume-error'), '')
  assert.deepEqual(problems, [])
})
