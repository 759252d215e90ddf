import type { Extension } from '@codemirror/state'
import type { EditorView } from '@codemirror/view'
import type { EditorAdapter } from '../index.js'
export function codemirrorAdapter (): EditorAdapter & { extension: Extension; attach (view: EditorView): void }
