// Helpers for the arena-web package's own tests (run by Node, no browser): the package as
// built into web-bindings/pkg (scripts/build-web.sh), and polling without fixed sleeps.
// The web room's tests (examples/web-room/tests) import these too.
import { readFileSync } from 'node:fs'
import { join, dirname, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const pkgDir = join(repo, 'web-bindings/pkg')

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
  const mod = await import(pathToFileURL(join(pkgDir, 'index.js')).href)
  await mod.init(readFileSync(join(pkgDir, 'arena_web_bg.wasm')))
  return mod
}
