// The Yjs side of the browser benchmark, bundled by bench/browser.mjs with esbuild: stock
// yjs, y-websocket and y-monaco from the npm registry. y-monaco imports Monaco's ESM build;
// the bundler maps that import to the AMD Monaco the page already loaded (window.monaco),
// so both editors in the page are the same Monaco.
export * as Y from 'yjs'
export { WebsocketProvider } from 'y-websocket'
export { MonacoBinding } from 'y-monaco'
