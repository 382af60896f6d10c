// Keyway against Seam's legacy JavaScript SDK, npm `seamapi` v8 (still in use by older
// integrations). Its wire habits differ from @seamapi/http: GET+query for reads, POST+JSON
// for create, update and delete, POST for events/list, and it waits on delete and on
// `update(..., { waitForCompletion: true })` by polling GET /action_attempts/get itself.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { Seam, SeamAPIError } from 'seamapi'

import {
  ACCESS_CODE_EVENTS,
  API_KEY,
  API_KEY_2,
  BACK_DOOR,
  codeSource,
  describeValue,
  ENDPOINT,
  FRONT_DOOR,
  isoIn,
  pollUntil,
  WRONG_API_KEY,
} from './helpers.mjs'

// Codes from this file start with 5 or 6; @seamapi/http uses 7/8, Python 3/4.
const nextCode = codeSource(5)
const nextUnmanagedCode = codeSource(6)

const seam = new Seam({ apiKey: API_KEY, endpoint: ENDPOINT })

/** Asserts that `promise` rejects with v8's SeamAPIError of the given type and status. */
const assertApiError = async (promise, { type, status }) => {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof SeamAPIError, `expected SeamAPIError, got ${describeValue(error)}`)
    assert.equal(error.status, status, `HTTP status of ${describeValue(error)}`)
    if (type !== undefined) {
      assert.equal(error.metadata?.type, type, `error type of ${describeValue(error)}`)
    }
    assert.ok(error.requestId, 'v8 reads a seam-request-id header on errors')
    return true
  })
}

const isNotFound = (error) => error instanceof SeamAPIError && error.status === 404

const waitForStatus = (accessCodeId, status, timeout = 15_000) =>
  pollUntil(
    `access code ${accessCodeId} to reach status "${status}"`,
    () => seam.accessCodes.get({ access_code_id: accessCodeId }),
    ({ value }) => value?.status === status,
    { timeout },
  ).then(({ value }) => value)

const ids = (list) => list.map((item) => item.access_code_id)

describe('seamapi v8 against Keyway', () => {
  it('reads the workspace and its sandbox locks', { timeout: 30_000 }, async () => {
    const workspace = await seam.workspaces.get()
    assert.equal(workspace?.workspace_id, 'seed_workspace_1')

    const devices = await seam.devices.list()
    const deviceIds = devices.map((d) => d.device_id)
    for (const id of [FRONT_DOOR, BACK_DOOR, 'schlage_device_id']) {
      assert.ok(deviceIds.includes(id), `devices/list lacks ${id}: ${JSON.stringify(deviceIds)}`)
    }

    // v8 reads the `locks` and `lock` response keys
    const locks = await seam.locks.list()
    assert.ok(Array.isArray(locks), `locks/list has no "locks" key: ${describeValue(locks)}`)
    assert.ok(locks.map((d) => d.device_id).includes(FRONT_DOOR), 'locks/list lacks the front door')
    const lock = await seam.locks.get(FRONT_DOOR)
    assert.equal(lock?.device_id, FRONT_DOOR, 'locks/get has no "lock" key')

    const device = await seam.devices.get({ device_id: FRONT_DOOR })
    assert.equal(device.device_id, FRONT_DOOR)

    const generated = await seam.accessCodes.generateCode({ device_id: FRONT_DOOR })
    assert.equal(generated.device_id, FRONT_DOOR)
    assert.match(generated.code, /^\d{4,6}$/, 'august locks take 4-6 digit codes')
  })

  it('manages an access code through its whole lifecycle', { timeout: 120_000 }, async () => {
    const since = new Date(Date.now() - 1000).toISOString()
    const code = nextCode()
    const name = `SDK v8 ${code}`

    // create: POST /access_codes/create
    const created = await seam.accessCodes.create({ device_id: FRONT_DOOR, code, name })
    assert.equal(typeof created.access_code_id, 'string')
    assert.equal(created.device_id, FRONT_DOOR)
    assert.equal(created.code, code)
    assert.equal(created.name, name)
    assert.equal(created.type, 'ongoing')
    assert.equal(created.status, 'setting')
    assert.equal(created.is_managed, true)
    const id = created.access_code_id

    // list by device and get: GET with a query string
    const listed = await seam.accessCodes.list({ device_id: FRONT_DOOR })
    assert.ok(ids(listed).includes(id), `list by device lacks ${id}`)
    assert.ok(listed.every((ac) => ac.device_id === FRONT_DOOR), 'list by device returns only that device')
    const fetched = await seam.accessCodes.get({ access_code_id: id })
    assert.equal(fetched.access_code_id, id)
    assert.equal(fetched.code, code)

    await waitForStatus(id, 'set')

    // update: POST /access_codes/update, then v8 polls GET /action_attempts/get
    const newCode = nextCode()
    const newName = `${name} renamed`
    const updateAttempt = await seam.accessCodes.update(
      { access_code_id: id, name: newName, code: newCode },
      { waitForCompletion: true },
    )
    assert.equal(updateAttempt?.status, 'success', `update attempt: ${describeValue(updateAttempt)}`)

    const afterUpdate = await seam.accessCodes.get({ access_code_id: id })
    assert.equal(afterUpdate.name, newName)
    assert.equal(afterUpdate.code, newCode)
    const reSet = await waitForStatus(id, 'set')
    assert.equal(reSet.code, newCode)

    // update without waiting hands back the pending (or finished) action attempt
    const renameAttempt = await seam.accessCodes.update({ access_code_id: id, name: `${newName} again` })
    assert.ok(renameAttempt?.action_attempt_id, `update answer: ${describeValue(renameAttempt)}`)
    const polled = await seam.actionAttempts.get(renameAttempt.action_attempt_id)
    assert.equal(polled.action_attempt_id, renameAttempt.action_attempt_id)
    assert.ok(['pending', 'success'].includes(polled.status), `action attempt: ${describeValue(polled)}`)
    await pollUntil(
      `rename action attempt ${renameAttempt.action_attempt_id} to succeed`,
      () => seam.actionAttempts.get(renameAttempt.action_attempt_id),
      ({ value }) => value?.status === 'success',
    )
    assert.equal((await seam.accessCodes.get({ access_code_id: id })).name, `${newName} again`)
    await waitForStatus(id, 'set')

    // v8 has no method for the sandbox simulation route; use its own request pipeline
    const unmanagedCode = nextUnmanagedCode()
    const { access_code: unmanaged } = await seam.makeRequest({
      url: '/access_codes/simulate/create_unmanaged_access_code',
      method: 'POST',
      data: { device_id: FRONT_DOOR, name: `Keypad ${unmanagedCode}`, code: unmanagedCode },
    })
    assert.equal(unmanaged.is_managed, false)
    assert.equal(unmanaged.status, 'set')
    assert.equal(unmanaged.code, unmanagedCode)

    const unmanagedList = await seam.accessCodes.unmanaged.list({ device_id: FRONT_DOOR })
    assert.ok(ids(unmanagedList).includes(unmanaged.access_code_id), 'unmanaged/list lacks the simulated code')
    assert.ok(!ids(unmanagedList).includes(id), 'unmanaged/list must not contain the managed code')
    const unmanagedGot = await seam.accessCodes.unmanaged.get({ access_code_id: unmanaged.access_code_id })
    assert.equal(unmanagedGot.code, unmanagedCode)
    assert.equal(unmanagedGot.is_managed, false)
    const managedList = await seam.accessCodes.list({ device_id: FRONT_DOOR })
    assert.ok(!ids(managedList).includes(unmanaged.access_code_id), 'access_codes/list must not contain unmanaged codes')

    // delete: POST /access_codes/delete, then v8 polls the action attempt until it leaves pending
    const deleted = await seam.accessCodes.delete({ access_code_id: id })
    assert.equal(deleted?.actionAttempt?.status, 'success', `delete answer: ${describeValue(deleted)}`)

    await assertApiError(seam.accessCodes.get({ access_code_id: id }), {
      type: 'access_code_not_found',
      status: 404,
    })
    assert.ok(!ids(await seam.accessCodes.list({ device_id: FRONT_DOOR })).includes(id), 'deleted code still listed')

    // events: v8 sends POST /events/list
    const { value: events } = await pollUntil(
      `events ${ACCESS_CODE_EVENTS.join(', ')} for ${id}`,
      () => seam.events.list({ access_code_id: id, since }),
      ({ value }) => ACCESS_CODE_EVENTS.every((t) => value?.some((e) => e.event_type === t)),
      { timeout: 5_000 },
    )
    assert.ok(events.every((e) => e.access_code_id === id), 'events/list filtered by access_code_id')
  })

  it('surfaces a duplicate code as a 409 duplicate_access_code SeamAPIError', { timeout: 60_000 }, async () => {
    const code = nextCode()
    const first = await seam.accessCodes.create({ device_id: FRONT_DOOR, code, name: `dup ${code}` })
    try {
      await assertApiError(
        seam.accessCodes.create({ device_id: FRONT_DOOR, code, name: `dup again ${code}` }),
        { type: 'duplicate_access_code', status: 409 },
      )
    } finally {
      // cleanup only: the lifecycle test checks delete itself
      await seam.accessCodes.delete({ access_code_id: first.access_code_id }).catch(() => {})
    }
  })

  it('surfaces a wrong API key as a 401 SeamAPIError', { timeout: 30_000 }, async () => {
    const intruder = new Seam({ apiKey: WRONG_API_KEY, endpoint: ENDPOINT })
    // v8 maps every non-2xx answer to SeamAPIError with the HTTP status
    await assertApiError(intruder.accessCodes.list({ device_id: FRONT_DOOR }), { status: 401 })
    await assertApiError(intruder.accessCodes.create({ device_id: FRONT_DOOR, code: nextCode() }), {
      status: 401,
    })
  })

  it("keeps another workspace's devices out of reach", { timeout: 30_000 }, async () => {
    const other = new Seam({ apiKey: API_KEY_2, endpoint: ENDPOINT })
    assert.equal((await other.workspaces.get())?.workspace_id, 'seed_workspace_2')
    assert.deepEqual(await other.devices.list(), [])
    await assertApiError(other.accessCodes.create({ device_id: FRONT_DOOR, code: nextCode() }), {
      type: 'device_not_found',
      status: 404,
    })
  })

  it('schedules a time-bound code: unset, then set, then gone', { timeout: 60_000 }, async () => {
    const code = nextCode()
    const startsAt = isoIn(2_000)
    const endsAt = isoIn(6_000)
    const created = await seam.accessCodes.create({
      device_id: BACK_DOOR,
      code,
      name: `window ${code}`,
      starts_at: startsAt,
      ends_at: endsAt,
    })
    const id = created.access_code_id
    assert.equal(created.type, 'time_bound')
    assert.equal(created.status, 'unset')
    assert.equal(Date.parse(created.starts_at), Date.parse(startsAt))
    assert.equal(Date.parse(created.ends_at), Date.parse(endsAt))

    const before = await seam.accessCodes.get({ access_code_id: id })
    if (Date.now() < Date.parse(startsAt) - 200) {
      assert.equal(before.status, 'unset', 'a future code is not on the lock yet')
    }

    // Each observation is stamped with the time its answer arrived: an answer that
    // arrived before starts_at (ends_at) proves the change happened too early.
    const observe = () =>
      seam.accessCodes.get({ access_code_id: id }).then(
        (accessCode) => ({ accessCode, at: Date.now() }),
        (error) => ({ error, at: Date.now() }),
      )

    const { value: setSeen } = await pollUntil(
      `time-bound code ${id} to reach status "set"`,
      observe,
      ({ value }) => value?.accessCode?.status === 'set',
    )
    assert.ok(
      setSeen.at >= Date.parse(startsAt) - 250,
      `set ${Date.parse(startsAt) - setSeen.at} ms before starts_at`,
    )

    const { value: goneSeen } = await pollUntil(
      `time-bound code ${id} to disappear after ends_at`,
      observe,
      ({ value }) => isNotFound(value?.error),
    )
    assert.ok(
      goneSeen.at >= Date.parse(endsAt) - 250,
      `gone ${Date.parse(endsAt) - goneSeen.at} ms before ends_at`,
    )
    await assertApiError(seam.accessCodes.get({ access_code_id: id }), {
      type: 'access_code_not_found',
      status: 404,
    })
  })
})
