import { Room } from './arena_web.js'
export { Room, verifySignature } from './arena_web.js'

/** A change to the code buffer: delete `delete` UTF-16 units at `pos`, insert `insert`. */
export interface Splice { pos: number; delete: number; insert: string }
export interface Selection { anchor: number; head: number }
export interface Peer {
  clientId: number; local: boolean; name: string; color: string
  anchor: number | null; head: number | null; state: unknown
}
export type Status = 'connecting' | 'online' | 'offline' | 'denied' | 'closed'
export interface StatusDetail { status: Status; attempt: number; retryInMs?: number; reason?: string }
export interface Consensus {
  round: number; enabled: boolean; required: string[]; satisfied: string[]; rejected: string[]
  votes: { voter: string; round: number; enabled: boolean }[]
}
export interface VersionMeta { id: string; label: string; cause: 'run' | 'restore' | 'manual'; at: number; by: string; stateVector: string; heads: Record<string, number> }
export interface DiffLine { kind: 'same' | 'removed' | 'added'; text: string }

/** Loads the WASM module once (default: arena_web_bg.wasm next to this file). */
export function init (input?: string | URL | Response | BufferSource | WebAssembly.Module): Promise<unknown>
export function ywsUrl (server: string, room: string, token: string): string

export class WebSocketTransport extends EventTarget {
  constructor (url: string, opts?: { WebSocket?: unknown; minDelayMs?: number; maxDelayMs?: number; window?: unknown })
  readonly status: Status
  /** The last status change's reason (a refusal's, a close's), or null. */
  readonly reason: string | null
  connect (): void
  send (bytes: Uint8Array): boolean
  setOffline (offline: boolean): void
  close (): void
}

/** The /signal WebSocket URL on a node at `server`. */
export function signalUrl (server: string, token: string): string

export type MeshStatus = Status | 'unsupported'
export interface MeshOptions {
  /** the /signal WebSocket URL, token included (see signalUrl) */
  url: string
  /** the room id */
  topic: string
  /** default: fetched from iceUrl (the node's GET /api/ice), else none */
  iceServers?: RTCIceServer[]
  iceUrl?: string
  WebSocket?: unknown
  RTCPeerConnection?: unknown
  /** most peers at once (default 8) */
  maxPeers?: number
  /** frames to a channel with more queued than this are dropped; it catches up when it drains (default 1 MiB) */
  maxBufferedBytes?: number
  /** a connection not open by then is dropped and re-announced (default 20 000) */
  connectTimeoutMs?: number
  minDelayMs?: number
  maxDelayMs?: number
  pingMs?: number
  announceMs?: number
  window?: unknown
}

/**
 * A WebRTC data-channel mesh between a room's browsers, signaled through the node's
 * /signal (y-webrtc signaling protocol). Events: 'open' {peer, resync}, 'message'
 * {peer, data}, 'close' {peer, reason}, 'status' {status, attempt, retryInMs?, reason?, peers},
 * 'peers' {peers}.
 */
export class MeshTransport extends EventTarget {
  constructor (o: MeshOptions)
  /** our random peer id (32 hex digits) */
  readonly peerId: string
  /** the signaling socket's status */
  readonly status: MeshStatus
  /** open data channels */
  readonly peerCount: number
  stats: { malformed: number; ignored: number; dropped: number; sent: number; received: number; opened: number; closed: number; signalErrors: number }
  peers (): string[]
  connect (): void
  sendTo (peer: string, bytes: Uint8Array): boolean
  broadcast (bytes: Uint8Array): number
  setOffline (offline: boolean): void
  close (): void
}

export type CallRole = 'host' | 'candidate' | 'observer'
export type CallErrorCode = 'permission' | 'no-device' | 'device-busy' | 'device' | 'screen' | 'signal' | 'negotiation' | 'unsupported'
export interface CallOptions {
  /** the node's base URL */
  server: string
  /** the room id (the signaling topic) */
  room: string
  /** the member's invite token */
  token: string
  role: CallRole
  name?: string
  /** send our camera and microphone (default true; never for observers) */
  media?: boolean
  /** default: GET /api/ice?room=&token= */
  iceServers?: RTCIceServer[]
  /** a connection disconnected this long gets an ICE restart (default 3000) */
  restartAfterMs?: number
  /** one not connected again this long is dropped (default 45 000) */
  dropAfterMs?: number
  /** a new connection's time to come up before it is restarted (default 10 000) */
  connectGraceMs?: number
  maxPeers?: number
  WebSocket?: unknown
  RTCPeerConnection?: unknown
  mediaDevices?: MediaDevices
  window?: unknown
}
export interface CallPeer {
  id: string; role: CallRole | 'recorder'; name: string; media: boolean
  pc: RTCPeerConnection | null; stream: MediaStream | null; state: string
}

/**
 * The room's 1-on-1 call (docs/call.md): one RTCPeerConnection per remote peer, signaled
 * over the node's /signal. Events: 'status' {status, reason?}, 'local' {stream, screen?},
 * 'peer' {peer, role, name, media, state}, 'track' {peer, role, name, kind, track, stream},
 * 'left' {peer, reason}, 'error' {code, message, peer?}.
 */
export class Call extends EventTarget {
  constructor (o: CallOptions)
  /** our random call peer id (32 hex digits) */
  readonly peerId: string
  readonly role: CallRole
  /** whether we send media (false: receive-only) */
  readonly media: boolean
  readonly status: MeshStatus
  readonly localStream: MediaStream | null
  readonly screenTrack: MediaStreamTrack | null
  readonly muted: boolean
  readonly cameraOff: boolean
  /** the last camera/microphone problem, or null */
  readonly mediaError: { code: CallErrorCode; message: string } | null
  readonly peers: Map<string, CallPeer>
  stats: { malformed: number; ignored: number; refused: number; offers: number; answers: number; restarts: number; signalErrors: number }
  /** opens the camera and microphone (a media peer), then joins over /signal */
  start (): Promise<void>
  setMuted (muted: boolean): Promise<void>
  setCamera (on: boolean): Promise<void>
  devices (): Promise<{ audioinput: { deviceId: string; label: string }[]; videoinput: { deviceId: string; label: string }[] }>
  /** switches to another microphone or camera (replaceTrack, no renegotiation); false on failure (an 'error' event says why) */
  setDevice (kind: 'audioinput' | 'videoinput', deviceId: string): Promise<boolean>
  shareScreen (): Promise<boolean>
  stopShare (): Promise<void>
  /** drops every connection and signals afresh (a member was removed: peer ids are not keys) */
  rejoin (reason?: string): void
  /** ICE restart with one peer, or every peer */
  restart (peer?: string): void
  connection (peer: string): RTCPeerConnection | null
  /** a bye to the others; closes every connection and stops the local tracks */
  leave (): void
}

export interface SessionOptions {
  server: string; room: string; token: string; name: string; color?: string
  seed?: Uint8Array; WebSocket?: unknown; now?: () => number; connect?: boolean; transport?: WebSocketTransport
  /** also sync with the room's other browsers over WebRTC (default off): true, option overrides, or a MeshTransport */
  mesh?: boolean | Partial<MeshOptions> | MeshTransport
}

export class ArenaSession extends EventTarget {
  constructor (o: SessionOptions)
  readonly room: Room
  readonly transport: WebSocketTransport
  /** the WebRTC mesh, when enabled */
  readonly mesh: MeshTransport | null
  readonly role: 'host' | 'candidate' | 'observer'
  readonly code: string
  /** the /yws transport's status (the node is the primary link) */
  readonly status: Status
  /** the mesh's signaling status, 'off' without a mesh */
  readonly meshStatus: MeshStatus | 'off'
  /** frames: sent to the node; meshFrames: sent on data channels */
  stats: { edits: number; frames: number; meshFrames: number; errors: number; rejected: number }
  /** how many browsers we have an open data channel with */
  meshPeers (): number
  /** applies the editor's changes to the document now; signs and sends them in a later task */
  edit (changes: Splice[]): void
  /** signs and sends the edits not sent yet, now */
  flush (): void
  /** records the selection; presence goes out in the task after the keystroke */
  setSelection (sel: Selection | null): void
  setUser (name: string, color?: string): void
  presence (): Peer[]
  meta (): { language: string; title: string; question: string; analyzerThreshold: string[]; analyzerRound: number; createdAt: number }
  setMeta (key: string, value: unknown): void
  /** `revoked`: a host removed that member (its entry stays, as history). */
  participants (): { key: string; name: string; role: string; joinedAt: number; revoked: boolean }[]
  /** Removes a member (its public key, hex: a participant's `key`); host only. Every replica
   *  refuses its envelopes from now on; the node closes its connections (code 4403). */
  revoke (memberKey: string): void
  vote (enabled: boolean): void
  consensus (): Consensus
  versions (): VersionMeta[]
  createVersion (label: string): void
  diff (from?: string | null, to?: string | null): DiffLine[]
  codeAt (id?: string | null): string
  restore (id: string): void
  runs (): unknown[]
  analysis (): unknown[]
  /** the extra files beside the code, sorted (each a text root `files/<name>`) */
  files (): string[]
  file (name: string): string | undefined
  /** throws with the reason when refused (a bad name, 32 files already, an observer) */
  addFile (name: string): void
  removeFile (name: string): void
  editFile (name: string, splices: Splice[]): void
  fileDiffs (from?: string | null, to?: string | null): { name: string, lines: DiffLine[] }[]
  /** simulates losing / regaining the network: the /yws socket and the mesh */
  setOffline (offline: boolean): void
  destroy (): void
}

/** What an editor must offer to be bound to a session. */
export interface EditorAdapter {
  getText (): string
  /** the text's length in UTF-16 units, if the editor has it without building the text:
   *  bindEditor then checks lengths after each remote batch and the whole text only when
   *  typing pauses */
  getLength? (): number
  setText (text: string): void
  applyRemote (changes: Splice[]): void
  onLocalChange (cb: (changes: Splice[]) => void): () => void
  getSelection? (): Selection | null
  onSelectionChange? (cb: (sel: Selection | null) => void): () => void
  renderCursors? (peers: Peer[]): void
  destroy? (): void
}

/** The lengths are compared after every remote batch; the whole texts `checkDelayMs` after
 *  the last one (default 250) and at least every `checkEveryMs` while batches keep coming
 *  (default 5000). */
export function bindEditor (session: ArenaSession, adapter: EditorAdapter, options?: { checkDelayMs?: number, checkEveryMs?: number }): () => void
/** Binds one extra file of the room to an editor (edits go to the file; room changes come
 *  back as minimal splices). Returns the unbind function. */
export function bindFile (session: ArenaSession, adapter: EditorAdapter, name: string): () => void
export function diffText (before: string, after: string): Splice | null
export function applyChanges (text: string, changes: Splice[]): string
export function shiftOffset (at: number, change: Splice): number
export function textareaAdapter (el: HTMLTextAreaElement): EditorAdapter
export function monacoAdapter (editor: unknown, monaco: unknown): EditorAdapter
