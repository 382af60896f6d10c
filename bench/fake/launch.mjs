// Starts Seam's fake server, seeded, on 127.0.0.1:$PORT only (its own launcher binds every
// interface). Prints its URL once it listens.
import http from 'node:http'

const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number' && typeof rest[0] !== 'string') {
    return listen.call(this, port, '127.0.0.1', ...rest)
  }
  return listen.call(this, port, ...rest)
}

const { createFake } = await import('@seamapi/fake-seam-connect')
const fake = await createFake()
await fake.seed()
const port = Number(process.env.PORT)
await fake.startServer({ port, signals: ['SIGINT', 'SIGTERM'] })
console.log(`fake listening on http://127.0.0.1:${port}`)
