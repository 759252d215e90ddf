// Bundled by scripts/build-web-room.sh (esbuild) into dist/vendor/codemirror.js for the
// room's `?editor=codemirror` mode.
export { EditorView, keymap } from '@codemirror/view'
export { EditorState } from '@codemirror/state'
export { codemirrorAdapter } from '../../web-bindings/js/adapters/codemirror.js'
