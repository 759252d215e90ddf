// Starts @hocuspocus/server (npm) on 127.0.0.1:$PORT with no extensions, for the load
// generator. Prints "listening <port>" once ready.
import { Server } from '@hocuspocus/server'

const server = new Server({ port: Number(process.env.PORT ?? 0), address: '127.0.0.1', quiet: true, stopOnSignals: true })
await server.listen()
console.log(`listening ${server.address.port}`)
