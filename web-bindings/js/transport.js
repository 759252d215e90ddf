// WebSocket transport to a bootstrap node's /yws/{room} endpoint: binary frames, reconnect
// with exponential backoff and jitter, and the browser's offline/online events.
//
// Events (EventTarget): 'open', 'message' (detail: Uint8Array), 'status' (detail:
// {status, attempt, retryInMs, reason}). status is one of 'connecting', 'online',
// 'offline' (waiting to retry), 'denied' (the node refused the token: no retry), 'closed'.

const DENIED = 4403

/**
 * Reconnection with exponential backoff and jitter, shared by the transports: a subclass
 * has `connect()`, `_setStatus(status, extra)`, `minDelayMs`, `maxDelayMs`, and the fields
 * `attempt`, `timer`, `stopped`, `forcedOffline`.
 */
export class Reconnecting extends EventTarget {
  _scheduleRetry (reason) {
    if (this.stopped) return
    this.attempt += 1
    const base = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** Math.min(this.attempt - 1, 10))
    const retryInMs = Math.round(base / 2 + Math.random() * base / 2)
    this._setStatus('offline', { reason, retryInMs })
    clearTimeout(this.timer)
    if (!this.forcedOffline) this.timer = setTimeout(() => this.connect(), retryInMs)
  }

  _retryNow () {
    clearTimeout(this.timer)
    this.attempt = 0
    this.connect()
  }
}

export class WebSocketTransport extends Reconnecting {
  /**
   * @param {string} url ws:// or wss:// URL, token included
   * @param {{WebSocket?: any, minDelayMs?: number, maxDelayMs?: number, window?: any}} [opts]
   */
  constructor (url, opts = {}) {
    super()
    this.url = url
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket
    this.minDelayMs = opts.minDelayMs ?? 250
    this.maxDelayMs = opts.maxDelayMs ?? 10_000
    this.status = 'closed'
    this.attempt = 0
    this.ws = null
    this.timer = null
    this.stopped = false
    this.forcedOffline = false
    const win = opts.window ?? (typeof window !== 'undefined' ? window : null)
    if (win && win.addEventListener) {
      this._onOffline = () => this._goOffline('browser offline')
      this._onOnline = () => { if (this.status === 'offline' && !this.forcedOffline) this._retryNow() }
      win.addEventListener('offline', this._onOffline)
      win.addEventListener('online', this._onOnline)
      this._win = win
    }
  }

  _setStatus (status, extra = {}) {
    this.status = status
    // Why (a refusal's or a close's reason), for whoever reads the status later.
    this.reason = extra.reason ?? null
    this.dispatchEvent(new CustomEvent('status', { detail: { status, attempt: this.attempt, ...extra } }))
  }

  connect () {
    this.stopped = false
    if (this.ws || this.status === 'denied') return
    if (this.forcedOffline || (this._win && this._win.navigator && this._win.navigator.onLine === false)) {
      this._setStatus('offline', { reason: 'browser offline' })
      return
    }
    clearTimeout(this.timer)
    this._setStatus('connecting')
    let ws
    try {
      ws = new this.WebSocket(this.url)
    } catch (e) {
      this._scheduleRetry(String(e))
      return
    }
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.onopen = () => {
      if (this.ws !== ws) return
      this.attempt = 0
      this._setStatus('online')
      this.dispatchEvent(new Event('open'))
    }
    ws.onmessage = (ev) => {
      if (this.ws !== ws || typeof ev.data === 'string') return
      this.dispatchEvent(new CustomEvent('message', { detail: new Uint8Array(ev.data) }))
    }
    ws.onclose = (ev) => {
      if (this.ws !== ws) return
      this.ws = null
      if (ev.code === DENIED) {
        this._setStatus('denied', { reason: ev.reason || 'permission denied' })
      } else if (!this.stopped) {
        this._scheduleRetry(ev.reason || `closed (${ev.code})`)
      }
    }
    ws.onerror = () => {} // onclose follows
  }

  _goOffline (reason) {
    const ws = this.ws
    this.ws = null
    clearTimeout(this.timer)
    if (ws) try { ws.close(1000, 'offline') } catch {}
    if (this.status !== 'denied' && this.status !== 'closed') this._setStatus('offline', { reason })
  }

  /** Simulates losing the network (tests, a "work offline" switch). */
  setOffline (offline) {
    this.forcedOffline = offline
    if (offline) this._goOffline('offline (forced)')
    else if (!this.stopped) this._retryNow()
  }

  /** Sends one frame; false when not connected (the caller's state catches up on reopen). */
  send (bytes) {
    const ws = this.ws
    if (!ws || ws.readyState !== 1) return false
    ws.send(bytes)
    return true
  }

  close () {
    this.stopped = true
    clearTimeout(this.timer)
    const ws = this.ws
    this.ws = null
    if (ws) try { ws.close(1000, 'bye') } catch {}
    if (this._win) {
      this._win.removeEventListener('offline', this._onOffline)
      this._win.removeEventListener('online', this._onOnline)
    }
    if (this.status !== 'denied') this._setStatus('closed')
  }
}
