// Shared helpers for the SDK compatibility tests. Nothing here talks HTTP itself:
// every request in the tests goes through an official SDK.

export const ENDPOINT = process.env.KEYWAY_URL
export const API_KEY = process.env.KEYWAY_API_KEY || 'seam_apikey1_token'
// Key of the second seeded workspace, which owns no devices.
export const API_KEY_2 = process.env.KEYWAY_API_KEY_2 || 'seam_apikey2_token'
// Syntactically valid (starts with seam_, so the SDKs send it) but unknown.
export const WRONG_API_KEY = 'seam_wrongkey_0000000000000000'

export const FRONT_DOOR = 'august_device_1'
export const BACK_DOOR = 'august_device_2'

if (!ENDPOINT) {
  throw new Error(
    'KEYWAY_URL is not set: point it at a running Keyway server, e.g. http://127.0.0.1:8080 (tests/sdk/run.sh does this)',
  )
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A random all-digit code of `length` digits whose first digit is `lead`.
 * Each test file uses its own leading digits, so files running side by side
 * never pick the same code on the same lock.
 */
export const randomCode = (lead, length = 6) => {
  let code = String(lead)
  while (code.length < length) code += String(Math.floor(Math.random() * 10))
  return code
}

/** Returns a generator of distinct random codes with the given leading digit. */
export const codeSource = (lead, length = 6) => {
  const used = new Set()
  return () => {
    for (;;) {
      const code = randomCode(lead, length)
      if (!used.has(code)) {
        used.add(code)
        return code
      }
    }
  }
}

export const describeValue = (value) => {
  if (value != null && value.error instanceof Error) return describeValue(value.error)
  if (value instanceof Error) {
    const extra = {}
    for (const key of ['code', 'statusCode', 'status', 'metadata', 'data']) {
      if (value[key] !== undefined) extra[key] = value[key]
    }
    return `${value.name}: ${value.message} ${JSON.stringify(extra)}`
  }
  return JSON.stringify(value)
}

/**
 * Calls `fn` every `interval` ms until `done(result)` is true, for at most
 * `timeout` ms. Errors thrown by `fn` are passed to `done` as `{ error }`.
 * Returns the last result; throws with the last observation on timeout.
 */
export const pollUntil = async (
  what,
  fn,
  done,
  { timeout = 15_000, interval = 200 } = {},
) => {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      last = { value: await fn() }
    } catch (error) {
      last = { error }
    }
    if (done(last)) return last
    if (Date.now() >= deadline) {
      throw new Error(
        `Timed out after ${timeout} ms waiting for ${what}; last observation: ${
          last.error ? describeValue(last.error) : describeValue(last.value)
        }`,
      )
    }
    await sleep(interval)
  }
}

export const isoIn = (ms) => new Date(Date.now() + ms).toISOString()

export const ACCESS_CODE_EVENTS = [
  'access_code.created',
  'access_code.set_on_device',
  'access_code.removed_from_device',
  'access_code.deleted',
]
