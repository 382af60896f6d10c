// Keyway managing a Z-Wave lock end to end: the real zwave-js driver inside zwave-server, on
// zwave-js' mock controller with a mock lock node (peer/), and Keyway pointed at that server.
// Every Keyway request goes through Seam's official SDK (@seamapi/http); what the lock really
// holds is checked through the mock lock's own control API (ZW_CONTROL_URL), never Keyway's.

import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'

import { SeamHttp } from '@seamapi/http/connect'

const ENDPOINT = process.env.KEYWAY_URL
const API_KEY = process.env.KEYWAY_API_KEY || 'seam_apikey1_token'
const CONTROL = process.env.ZW_CONTROL_URL
if (!ENDPOINT || !CONTROL) throw new Error('KEYWAY_URL and ZW_CONTROL_URL must be set (tests/zwave/run.sh does this)')

const seam = SeamHttp.fromApiKey(API_KEY, { endpoint: ENDPOINT })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `fn` until `done(value)` holds; throws with the last value after `timeout` ms. */
async function until(what, fn, done, { timeout = 20_000, interval = 200 } = {}) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      last = await fn()
      if (done(last)) return last
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`)
    await sleep(interval)
  }
}

/** The mock lock's control API: what the lock holds, and the owner's hands on its keypad. */
async function control(path, body) {
  const response = await fetch(`${CONTROL}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  assert.ok(response.ok, `${path}: ${response.status} ${text}`)
  return text ? JSON.parse(text) : {}
}

const lockSlots = async () => (await control('/state')).slots ?? {}
const slotHolding = (slots, code) => Object.entries(slots).find(([, s]) => s && s.code === code && s.status !== 0)?.[0]

let lock

describe('a Z-Wave lock through Z-Wave JS', () => {
  before(async () => {
    lock = await until(
      'the Z-Wave lock to appear as a device',
      async () => (await seam.devices.list()).find((d) => d.connected_account_id && d.properties?.online && d.properties?.max_active_codes_supported === Number(process.env.ZW_SLOTS || 20) && !d.can_simulate_disconnection),
      (found) => found !== undefined,
      { timeout: 60_000 },
    )
  })

  test('the lock is a device with its properties', async () => {
    const device = await seam.devices.get({ device_id: lock.device_id })
    assert.equal(device.properties.online, true)
    assert.equal(device.properties.max_active_codes_supported, Number(process.env.ZW_SLOTS || 20))
    assert.deepEqual(device.properties.supported_code_lengths, [4, 5, 6, 7, 8, 9, 10])
    assert.ok(device.properties.name.length > 0)
    assert.ok(device.properties.manufacturer.length > 0)
    assert.ok(device.capabilities_supported.includes('access_code'))
    const account = await seam.connectedAccounts.get({ connected_account_id: device.connected_account_id })
    assert.equal(account.account_type, 'zwave_js')
    assert.deepEqual(account.errors, [])
  })

  test('create → set only once the slot holds the code; delete → slot empty', async () => {
    const code = '2468'
    const started = Date.now()
    const created = await seam.accessCodes.create({ device_id: lock.device_id, code, name: 'z-wave e2e' })
    assert.equal(created.status, 'setting')
    const set = await until(
      'the code to be set',
      () => seam.accessCodes.get({ access_code_id: created.access_code_id }),
      (ac) => ac.status === 'set',
    )
    const elapsed = Date.now() - started
    console.log(`create → set on the mock Z-Wave lock: ${elapsed} ms`)
    assert.deepEqual(set.errors, [])
    // By the time Keyway says `set`, the lock holds the code.
    const slot = slotHolding(await lockSlots(), code)
    assert.ok(slot, `the lock holds ${code}: ${JSON.stringify(await lockSlots())}`)
    const events = await seam.events.list({ access_code_id: created.access_code_id, since: new Date(started - 1000).toISOString() })
    assert.ok(events.some((e) => e.event_type === 'access_code.set_on_device'))

    // The keypad opens the door with it: lock.unlocked names the code.
    await control('/keypad/unlock', { code })
    const unlocked = await until(
      'lock.unlocked with the access code',
      () => seam.events.list({ device_id: lock.device_id, event_type: 'lock.unlocked', since: new Date(started - 1000).toISOString() }),
      (list) => list.some((e) => e.access_code_id === created.access_code_id),
    )
    assert.ok(unlocked.length >= 1)

    await seam.accessCodes.delete({ access_code_id: created.access_code_id })
    await until(
      'the code to be gone',
      () => seam.accessCodes.get({ access_code_id: created.access_code_id }).then(() => 'still there', (e) => e),
      (outcome) => outcome !== 'still there',
    )
    const after = await lockSlots()
    assert.equal(slotHolding(after, code), undefined, `slot ${slot} still holds the code: ${JSON.stringify(after)}`)
  })

  test('a code programmed at the keypad becomes an unmanaged code, and can be converted', async () => {
    const code = '97531'
    await control('/keypad/program', { slot: 12, code })
    const unmanaged = await until(
      'the keypad code to be discovered',
      async () => (await seam.accessCodes.unmanaged.list({ device_id: lock.device_id })).find((ac) => ac.code === code),
      (found) => found !== undefined,
    )
    assert.equal(unmanaged.is_managed, false)
    await seam.accessCodes.unmanaged.convertToManaged({ access_code_id: unmanaged.access_code_id })
    const managed = await until(
      'the converted code to be managed',
      () => seam.accessCodes.get({ access_code_id: unmanaged.access_code_id }),
      (ac) => ac.is_managed === true && ac.status === 'set',
    )
    assert.equal(managed.code, code)
    // Converting does not touch the lock.
    assert.equal(slotHolding(await lockSlots(), code), '12')
    await seam.accessCodes.delete({ access_code_id: managed.access_code_id })
    await until('slot 12 to be cleared', lockSlots, (slots) => slotHolding(slots, code) === undefined)
  })

  test('a PIN the lock already holds is refused by the lock', async () => {
    const code = `8${String(Math.floor(Math.random() * 100000)).padStart(5, '0')}`
    // Programmed without telling anyone (no notification, no report): only the lock knows.
    await control('/keypad/program', { slot: 15, code, silent: true })
    const created = await seam.accessCodes.create({ device_id: lock.device_id, code, name: 'duplicate' })
    const failed = await until(
      'the lock to refuse the duplicate',
      () => seam.accessCodes.get({ access_code_id: created.access_code_id }),
      (ac) => ac.errors.length > 0,
    )
    assert.notEqual(failed.status, 'set')
    assert.equal(failed.errors[0].error_code, 'duplicate_code_on_device', JSON.stringify(failed.errors))
    const slots = await lockSlots()
    assert.equal(slotHolding(slots, code), '15', 'only the keypad slot holds the PIN')
    await seam.accessCodes.delete({ access_code_id: created.access_code_id })
  })

  test('an edit at the keypad is detected and put back', async () => {
    const code = '1357'
    const created = await seam.accessCodes.create({ device_id: lock.device_id, code, name: 'keypad edit' })
    await until('set', () => seam.accessCodes.get({ access_code_id: created.access_code_id }), (ac) => ac.status === 'set')
    const slot = Number(slotHolding(await lockSlots(), code))
    await control('/keypad/program', { slot, code: '9999' })
    const warned = await until(
      'the external modification warning',
      () => seam.events.list({ access_code_id: created.access_code_id, event_type: 'access_code.modified_external_to_seam' }),
      (list) => list.length > 0,
    )
    assert.ok(warned.length > 0)
    await until('the code to be put back on the lock', lockSlots, (slots) => slotHolding(slots, code) !== undefined)
    await seam.accessCodes.delete({ access_code_id: created.access_code_id })
    await until('gone', lockSlots, (slots) => slotHolding(slots, code) === undefined)
  })

  test('create → set timings on a warm lock', async () => {
    const times = []
    for (let n = 0; n < 5; n++) {
      const started = Date.now()
      const created = await seam.accessCodes.create({ device_id: lock.device_id, code: `6${n}${String(Date.now() % 1000).padStart(3, '0')}`, name: `timing ${n}` })
      await until('set', () => seam.accessCodes.get({ access_code_id: created.access_code_id }), (ac) => ac.status === 'set', { interval: 20 })
      times.push(Date.now() - started)
      await seam.accessCodes.delete({ access_code_id: created.access_code_id })
      await until('gone', () => seam.accessCodes.get({ access_code_id: created.access_code_id }).then(() => 'still there', (e) => e), (o) => o !== 'still there', { interval: 20 })
    }
    const sorted = [...times].sort((a, b) => a - b)
    console.log(`create → set on a warm mock Z-Wave lock, 5 codes: ${times.join(', ')} ms (median ${sorted[2]} ms)`)
    assert.equal(times.length, 5)
  })

  test('lock and unlock the door through Door Lock CC', async () => {
    await seam.locks.unlockDoor({ device_id: lock.device_id }, { waitForActionAttempt: { timeout: 15_000 } })
    assert.equal((await control('/state')).locked, false)
    await seam.locks.lockDoor({ device_id: lock.device_id }, { waitForActionAttempt: { timeout: 15_000 } })
    assert.equal((await control('/state')).locked, true)
    const device = await until('the device to say locked', () => seam.devices.get({ device_id: lock.device_id }), (d) => d.properties.locked === true)
    assert.equal(device.properties.locked, true)
  })
})
