// Helpers for the web room's tests: the real arena-bootstrap binary (port 0 or a fixed one;
// it can be killed and restarted on its data dir), the room API, polling without fixed
// sleeps, headless Chromium through playwright-core.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'

export const here = dirname(fileURLToPath(import.meta.url))
export const repo = resolve(here, '../../..')
export const distDir = process.env.ARENA_WEB_DIST ?? join(repo, 'examples/web-room/dist')
export { pkgDir, waitFor, loadArena } from '../../../web-bindings/tests/js/support.mjs'
export const artifactsDir = process.env.ARENA_WEB_ARTIFACTS ?? join(repo, 'target/web-room')

/**
 * Starts target/debug/arena-bootstrap (or $ARENA_BOOTSTRAP_BIN) on 127.0.0.1:`port` (default
 * 0: a free port) with `dataDir` (default: a fresh temp dir, removed by stop()). Restarting
 * a node is `startServer({port: old.port, dataDir: old.dataDir})` after `old.kill()`: a
 * data dir passed in is left in place by stop().
 */
/** `nice`: run the node at that niceness (through nice(1), so every thread of it). */
export async function startServer ({ staticDir = distDir, port = 0, dataDir, nice = 0 } = {}) {
  const bin = process.env.ARENA_BOOTSTRAP_BIN ?? join(repo, 'target/debug/arena-bootstrap')
  if (!existsSync(bin)) throw new Error(`${bin} missing: cargo build -p arena-bootstrap (scripts/test-web.sh does)`)
  const ownDir = dataDir === undefined
  dataDir ??= mkdtempSync(join(tmpdir(), 'arena-web-test-'))
  const args = ['--http-addr', `127.0.0.1:${port}`, '--data-dir', dataDir, '--static-dir', staticDir]
  const [cmd, argv] = nice ? ['nice', ['-n', String(nice), bin, ...args]] : [bin, args]
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } })
  const logs = []
  const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })))
  createInterface({ input: proc.stderr }).on('line', (l) => { logs.push(l); if (process.env.ARENA_TEST_VERBOSE) console.error('[node]', l) })
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error('arena-bootstrap did not start: ' + logs.join('\n'))), 20_000)
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/)
      if (m) { clearTimeout(timer); resolveUrl(m[1]) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`arena-bootstrap exited (${code}): ${logs.join('\n')}`)) })
  })
  const running = () => proc.exitCode === null && proc.signalCode === null
  return {
    url,
    port: Number(new URL(url).port),
    dataDir,
    logs,
    pid: proc.pid,
    /** Sends `signal` (default SIGKILL: the node dies without a goodbye) and waits for the
     *  exit; the data dir stays (restart on it). Resolves {code, signal}. */
    async kill (signal = 'SIGKILL') {
      if (running()) proc.kill(signal)
      return exited
    },
    /** SIGTERM, then SIGKILL if the node has not exited within 5 s; removes the data dir
     *  when startServer made it. */
    async stop () {
      if (running()) {
        proc.kill('SIGTERM')
        const timer = setTimeout(() => { logs.push('test: no exit 5 s after SIGTERM, killing'); proc.kill('SIGKILL') }, 5000)
        await exited
        clearTimeout(timer)
      }
      if (ownDir) rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

/** POST /api/rooms → {room, tokens: {host, candidate, observer}, links}. */
export async function createRoom (url, body = { title: 'test room', language: 'python' }) {
  const res = await fetch(`${url}/api/rooms`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (res.status !== 201) throw new Error(`create room: ${res.status} ${await res.text()}`)
  return res.json()
}

/** Debian's Chromium through playwright-core; never a downloaded browser. playwright-core
 *  gives every launch a fresh temporary profile (--user-data-dir) of its own. `args`: more
 *  command-line switches. */
export async function launchChromium ({ args = [] } = {}) {
  const { chromium } = await import('playwright-core')
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...args]
  })
  return { browser, close: () => browser.close() }
}

/**
 * Opens the room `created` in a new browser context as `name`, with `role`'s invite and the
 * page options `query` (`editor=textarea&mesh=0`, ...), and waits until it is online. Page
 * errors (and console errors, unless `consoleErrors` is false) go into `problems`.
 */
export async function openRoomPage (chromium, url, created, role, name, { query = '', problems, consoleErrors = true }) {
  const context = await chromium.browser.newContext({ viewport: { width: 1280, height: 800 } })
  const page = await context.newPage()
  page.on('pageerror', (e) => problems.push(`${name}: ${e.message}`))
  if (consoleErrors) page.on('console', (m) => { if (m.type() === 'error') problems.push(`${name} console: ${m.text()}`) })
  await page.goto(`${url}/room/${created.room}?name=${name}${query ? '&' + query : ''}#token=${created.tokens[role]}`)
  await page.waitForFunction(() => window.arena?.session.status === 'online', null, { timeout: 30_000 })
  return { page, context, name }
}
