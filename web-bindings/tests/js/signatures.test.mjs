// The signature rule in the WASM module (Node runs the same arena_web_bg.wasm a browser
// does): every Ed25519 vector of core/tests/data/ed25519-vectors.json (the "Taming the many
// EdDSAs" edge cases and the Wycheproof vectors) gets the verdict the native path gave
// (arena-core's test `vectors_fixture_matches_the_native_verdicts` keeps that file honest).
// The WASM module verifies without the static basepoint table, by its own multiplication:
// a different code path that must agree on every vector, or replicas would fork.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadArena } from './support.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const vectors = JSON.parse(readFileSync(join(root, 'core', 'tests', 'data', 'ed25519-vectors.json'), 'utf8'))
const { verifySignature } = await loadArena()
const bytes = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16))

test('the WASM module gives the native verdict on every Ed25519 vector', () => {
  assert.ok(vectors.length > 150, `${vectors.length} vectors`)
  const differ = vectors.filter((v) => verifySignature(v.key, bytes(v.msg), bytes(v.sig)) !== v.ok).map((v) => v.name)
  assert.deepEqual(differ, [])
  // Both verdicts occur: the check is not vacuous.
  assert.ok(vectors.some((v) => v.ok) && vectors.some((v) => !v.ok))
})
