// Helpers for the web room's tests: the real arena-bootstrap binary on port 0, the room API,
// polling without fixed sleeps, headless Chromium through playwright-core.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'

export const here = dirname(fileURLToPath(import.meta.url))
export const repo = resolve(here, '../../..')
export const distDir = process.env.ARENA_WEB_DIST ?? join(repo, 'examples/web-room/dist')
export const pkgDir = join(repo, 'web-bindings/pkg')
export const artifactsDir = process.env.ARENA_WEB_ARTIFACTS ?? join(repo, 'target/web-room')

/** Starts target/debug/arena-bootstrap (or $ARENA_BOOTSTRAP_BIN) on 127.0.0.1:0 with a temp data dir. */
export async function startServer ({ staticDir = distDir } = {}) {
  const bin = process.env.ARENA_BOOTSTRAP_BIN ?? join(repo, 'target/debug/arena-bootstrap')
  if (!existsSync(bin)) throw new Error(`${bin} missing: cargo build -p arena-bootstrap (scripts/test-web.sh does)`)
  const dataDir = mkdtempSync(join(tmpdir(), 'arena-web-test-'))
  const args = ['--http-addr', '127.0.0.1:0', '--data-dir', dataDir, '--static-dir', staticDir]
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } })
  const logs = []
  createInterface({ input: proc.stderr }).on('line', (l) => { logs.push(l); if (process.env.ARENA_TEST_VERBOSE) console.error('[node]', l) })
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error('arena-bootstrap did not start: ' + logs.join('\n'))), 20_000)
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/)
      if (m) { clearTimeout(timer); resolveUrl(m[1]) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`arena-bootstrap exited (${code}): ${logs.join('\n')}`)) })
  })
  return {
    url,
    logs,
    /** SIGTERM, then SIGKILL if the node has not exited within 5 s. */
    async stop () {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r))
        proc.kill('SIGTERM')
        const timer = setTimeout(() => { logs.push('test: no exit 5 s after SIGTERM, killing'); proc.kill('SIGKILL') }, 5000)
        await exited
        clearTimeout(timer)
      }
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

/** POST /api/rooms → {room, tokens: {host, candidate, observer}, links}. */
export async function createRoom (url, body = { title: 'test room', language: 'python' }) {
  const res = await fetch(`${url}/api/rooms`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (res.status !== 201) throw new Error(`create room: ${res.status} ${await res.text()}`)
  return res.json()
}

/** Polls `pred` (sync or async) every 25 ms until truthy; fails after `timeoutMs` with `what()`. */
export async function waitFor (pred, { timeoutMs = 15_000, what = () => '' } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await pred()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms ${await what()}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

/** The arena-web package, initialised for Node (WASM bytes read from web-bindings/pkg). */
export async function loadArena () {
  const mod = await import(join(pkgDir, 'index.js'))
  await mod.init(readFileSync(join(pkgDir, 'arena_web_bg.wasm')))
  return mod
}

/** Debian's Chromium through playwright-core; never a downloaded browser. playwright-core
 *  gives every launch a fresh temporary profile (--user-data-dir) of its own. */
export async function launchChromium () {
  const { chromium } = await import('playwright-core')
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  return { browser, close: () => browser.close() }
}
