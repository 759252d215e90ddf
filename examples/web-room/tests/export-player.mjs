// Opens a player exported by `arena-node export --format html` in Debian's Chromium, seeks
// to a wall-clock instant, then plays for a second; prints what it showed as JSON. Run by
// arena-bootstrap's tests/media.rs (not a node test of its own).
//   node export-player.mjs PLAYER.html SEEK_MS
import { launchChromium } from './support.mjs'

const [file, seek] = process.argv.slice(2)
const { browser, close } = await launchChromium({ args: ['--autoplay-policy=no-user-gesture-required'] })
try {
  const page = await browser.newPage()
  const errors = []
  page.on('pageerror', e => errors.push(String(e)))
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
  await page.goto('file://' + file)
  const state = () => page.evaluate(() => ({
    player: window.__player,
    tracks: window.__tracks(),
    code: document.getElementById('code').textContent,
    marks: [...document.querySelectorAll('#marks span')].map(s => s.dataset.kind),
    webcodecs: typeof VideoDecoder !== 'undefined'
  }))
  await page.evaluate(ms => window.__seek(ms), Number(seek))
  // Audio seeks once its data is loaded.
  await page.waitForFunction(() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1))
  await page.evaluate(ms => window.__seek(ms), Number(seek))
  const seeked = await state()
  await page.click('#play')
  await page.waitForTimeout(1500)
  const played = await state()
  await page.click('#play')
  console.log(JSON.stringify({ seeked, played, errors }))
} finally {
  await close()
}
