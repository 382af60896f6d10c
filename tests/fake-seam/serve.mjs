// Starts Seam's fake server (npm @seamapi/fake-seam-connect), seeded, on 127.0.0.1:$PORT only.
// Its own bin (`fake-seam-connect --seed`) listens on every interface; this launcher does the
// same through the package's API with the listening address pinned to loopback.
import net from 'node:net'
import process from 'node:process'

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))) {
    const callback = rest.find((arg) => typeof arg === 'function')
    return listen.call(this, Number(port), '127.0.0.1', callback)
  }
  return listen.call(this, port, ...rest)
}

const port = Number(process.env.PORT)
if (!Number.isInteger(port) || port <= 0) {
  console.error('serve.mjs: set PORT to the port to listen on')
  process.exit(2)
}
const { createFake } = await import('@seamapi/fake-seam-connect')
const fake = await createFake()
await fake.seed()
await fake.startServer({ port, signals: ['SIGINT', 'SIGTERM'] })
console.log(`fake-seam-connect listening on http://127.0.0.1:${port}`)
