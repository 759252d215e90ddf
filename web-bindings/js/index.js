// arena-web: InterviewArena in the browser. See README.md.
export { init, ywsUrl, ArenaSession, Room } from './session.js'
export { verifySignature } from './arena_web.js'
export { WebSocketTransport } from './transport.js'
export { MeshTransport, signalUrl } from './mesh.js'
export { Call } from './call.js'
export { bindEditor, bindFile, diffText, applyChanges, shiftOffset } from './bind.js'
export { textareaAdapter } from './adapters/textarea.js'
export { monacoAdapter } from './adapters/monaco.js'
