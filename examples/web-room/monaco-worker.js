// Monaco's web worker, loaded from the copy of monaco-editor/min/vs the node serves.
self.MonacoEnvironment = { baseUrl: '/vendor/monaco/' }
importScripts('/vendor/monaco/vs/base/worker/workerMain.js')
