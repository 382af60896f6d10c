// Keyway against Seam's current JavaScript SDK, @seamapi/http (what the npm `seam` package wraps).
// Every request goes through the SDK's own methods, so the HTTP verbs, query/body encoding,
// headers and response parsing are the SDK's: GET+query for reads, POST for create and
// simulate, PATCH for update, DELETE+query for delete.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import {
  SeamHttp,
  SeamHttpApiError,
  SeamHttpUnauthorizedError,
} from '@seamapi/http'

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

// Codes from this file start with 7 or 8; seamapi-v8 uses 5/6, Python 3/4 (runs may overlap).
// No code starts with 1, so none breaks the Schlage lock's `cannot_start_with_12` constraint.
const nextCode = codeSource(7)
const nextUnmanagedCode = codeSource(8)

const SCHLAGE = 'schlage_device_id'

const seam = SeamHttp.fromApiKey(API_KEY, { endpoint: ENDPOINT })

/** Asserts that `promise` rejects with the SDK's API error of the given type and status. */
const assertApiError = async (promise, { type, status, ErrorClass = SeamHttpApiError }) => {
  await assert.rejects(promise, (error) => {
    assert.ok(
      error instanceof ErrorClass,
      `expected ${ErrorClass.name}, got ${describeValue(error)}`,
    )
    assert.equal(error.statusCode, status, `HTTP status of ${describeValue(error)}`)
    assert.equal(error.code, type, `error type of ${describeValue(error)}`)
    assert.ok(error.requestId, 'the SDK reads a seam-request-id header on errors')
    return true
  })
}

const isNotFound = ({ error }) =>
  error instanceof SeamHttpApiError && error.statusCode === 404

const waitForStatus = (accessCodeId, status, timeout = 15_000) =>
  pollUntil(
    `access code ${accessCodeId} to reach status "${status}"`,
    () => seam.accessCodes.get({ access_code_id: accessCodeId }),
    ({ value }) => value?.status === status,
    { timeout },
  ).then(({ value }) => value)

const ids = (list) => list.map((item) => item.access_code_id)

describe('@seamapi/http against Keyway', () => {
  it('reads the workspace and its sandbox locks', { timeout: 30_000 }, async () => {
    const workspace = await seam.workspaces.get()
    assert.equal(workspace.workspace_id, 'seed_workspace_1')

    const devices = await seam.devices.list()
    const deviceIds = devices.map((d) => d.device_id)
    for (const id of [FRONT_DOOR, BACK_DOOR, 'schlage_device_id']) {
      assert.ok(deviceIds.includes(id), `devices/list lacks ${id}: ${JSON.stringify(deviceIds)}`)
    }

    const locks = await seam.locks.list()
    assert.ok(locks.map((d) => d.device_id).includes(FRONT_DOOR), 'locks/list lacks the front door')

    const lock = await seam.locks.get({ device_id: FRONT_DOOR })
    assert.equal(lock.device_id, FRONT_DOOR)
    const device = await seam.devices.get({ device_id: FRONT_DOOR })
    assert.equal(device.device_id, FRONT_DOOR)

    const generated = await seam.accessCodes.generateCode({ device_id: FRONT_DOOR })
    assert.equal(generated.device_id, FRONT_DOOR)
    assert.match(generated.code, /^\d{4,6}$/, 'august locks take 4-6 digit codes')
  })

  it('manages an access code through its whole lifecycle', { timeout: 90_000 }, async () => {
    const since = new Date(Date.now() - 1000).toISOString()
    const code = nextCode()
    const name = `SDK http ${code}`

    // create: POST /access_codes/create
    const createRequest = seam.accessCodes.create({ device_id: FRONT_DOOR, code, name })
    assert.equal(createRequest.method, 'POST')
    const createBody = await createRequest.fetchResponse()
    assert.equal(createBody.ok, true, `create body: ${JSON.stringify(createBody)}`)
    assert.ok(createBody.action_attempt, `create returns an action_attempt: ${JSON.stringify(createBody)}`)
    const created = await createRequest
    assert.equal(created, createBody.access_code)
    assert.equal(typeof created.access_code_id, 'string')
    assert.equal(created.device_id, FRONT_DOOR)
    assert.equal(created.code, code)
    assert.equal(created.name, name)
    assert.equal(created.type, 'ongoing')
    assert.equal(created.status, 'setting')
    assert.equal(created.is_managed, true)
    assert.ok(Array.isArray(created.errors) && Array.isArray(created.warnings))
    assert.equal(typeof created.created_at, 'string')
    const id = created.access_code_id

    // list by device: GET /access_codes/list?device_id=
    const listed = await seam.accessCodes.list({ device_id: FRONT_DOOR })
    assert.ok(ids(listed).includes(id), `list by device lacks ${id}`)
    assert.ok(listed.every((ac) => ac.device_id === FRONT_DOOR), 'list by device returns only that device')

    // get: GET /access_codes/get?access_code_id=
    const fetched = await seam.accessCodes.get({ access_code_id: id })
    assert.equal(fetched.access_code_id, id)
    assert.equal(fetched.code, code)

    // the engine puts it on the lock
    await waitForStatus(id, 'set')

    // update name and code: PATCH /access_codes/update (the SDK returns nothing)
    const newCode = nextCode()
    const newName = `${name} renamed`
    const updateRequest = seam.accessCodes.update({ access_code_id: id, name: newName, code: newCode })
    assert.equal(updateRequest.method, 'PATCH')
    const updateBody = await updateRequest.fetchResponse()
    assert.ok(updateBody.action_attempt, `update returns an action_attempt: ${JSON.stringify(updateBody)}`)
    assert.equal(await updateRequest, undefined)

    const afterUpdate = await seam.accessCodes.get({ access_code_id: id })
    assert.equal(afterUpdate.name, newName)
    assert.equal(afterUpdate.code, newCode)
    assert.ok(['setting', 'set'].includes(afterUpdate.status), `status after update: ${afterUpdate.status}`)
    const reSet = await waitForStatus(id, 'set')
    assert.equal(reSet.code, newCode)

    // get by device_id + code finds the new code, not the old one
    const byCode = await seam.accessCodes.get({ device_id: FRONT_DOOR, code: newCode })
    assert.equal(byCode.access_code_id, id)
    await assertApiError(seam.accessCodes.get({ device_id: FRONT_DOOR, code }), {
      type: 'access_code_not_found',
      status: 404,
    })

    // a code typed at the keypad: POST /access_codes/simulate/create_unmanaged_access_code
    const unmanagedCode = nextUnmanagedCode()
    const unmanaged = await seam.accessCodes.simulate.createUnmanagedAccessCode({
      device_id: FRONT_DOOR,
      name: `Keypad ${unmanagedCode}`,
      code: unmanagedCode,
    })
    assert.equal(unmanaged.is_managed, false)
    assert.equal(unmanaged.status, 'set')
    assert.equal(unmanaged.code, unmanagedCode)
    assert.equal(unmanaged.device_id, FRONT_DOOR)

    // GET /access_codes/unmanaged/list and /unmanaged/get
    const unmanagedList = await seam.accessCodes.unmanaged.list({ device_id: FRONT_DOOR })
    assert.ok(ids(unmanagedList).includes(unmanaged.access_code_id), 'unmanaged/list lacks the simulated code')
    assert.ok(!ids(unmanagedList).includes(id), 'unmanaged/list must not contain the managed code')
    assert.ok(unmanagedList.every((ac) => ac.is_managed === false))
    const unmanagedGot = await seam.accessCodes.unmanaged.get({ access_code_id: unmanaged.access_code_id })
    assert.equal(unmanagedGot.code, unmanagedCode)
    assert.equal(unmanagedGot.is_managed, false)
    const managedList = await seam.accessCodes.list({ device_id: FRONT_DOOR })
    assert.ok(!ids(managedList).includes(unmanaged.access_code_id), 'access_codes/list must not contain unmanaged codes')

    // the keypad code is on the lock, so a managed code with the same PIN is a duplicate
    await assertApiError(
      seam.accessCodes.create({ device_id: FRONT_DOOR, code: unmanagedCode, name: 'clash with keypad code' }),
      { type: 'duplicate_access_code', status: 409 },
    )

    // delete: DELETE /access_codes/delete?access_code_id=
    const deleteRequest = seam.accessCodes.delete({ access_code_id: id })
    assert.equal(deleteRequest.method, 'DELETE')
    const deleteBody = await deleteRequest.fetchResponse()
    const deleteAttempt = deleteBody.action_attempt
    assert.ok(deleteAttempt?.action_attempt_id, `delete returns an action_attempt: ${JSON.stringify(deleteBody)}`)
    assert.ok(['pending', 'success'].includes(deleteAttempt.status), `delete attempt: ${JSON.stringify(deleteAttempt)}`)

    // the SDK's own action-attempt polling (GET /action_attempts/get) sees it succeed
    const resolved = await seam.actionAttempts.get(
      { action_attempt_id: deleteAttempt.action_attempt_id },
      { waitForActionAttempt: { timeout: 10_000, pollingInterval: 250 } },
    )
    assert.equal(resolved.status, 'success')

    await assertApiError(seam.accessCodes.get({ access_code_id: id }), {
      type: 'access_code_not_found',
      status: 404,
    })
    const afterDelete = await seam.accessCodes.list({ device_id: FRONT_DOOR })
    assert.ok(!ids(afterDelete).includes(id), 'deleted code still listed')

    // events: GET /events/list?access_code_id=
    const { value: events } = await pollUntil(
      `events ${ACCESS_CODE_EVENTS.join(', ')} for ${id}`,
      () => seam.events.list({ access_code_id: id, since }),
      ({ value }) => ACCESS_CODE_EVENTS.every((t) => value?.some((e) => e.event_type === t)),
      { timeout: 5_000 },
    )
    assert.ok(events.every((e) => e.access_code_id === id), 'events/list filtered by access_code_id')
  })

  it('pages through a lock\'s codes with the SDK paginator', { timeout: 60_000 }, async () => {
    const created = []
    try {
      for (let i = 0; i < 3; i++) {
        const code = nextCode()
        created.push(await seam.accessCodes.create({ device_id: SCHLAGE, code, name: `page ${code}` }))
      }
      const paginator = seam.createPaginator(seam.accessCodes.list({ device_id: SCHLAGE, limit: 2 }))
      const [firstPage, pagination] = await paginator.firstPage()
      assert.equal(firstPage.length, 2, 'limit=2 gives a page of 2')
      assert.equal(pagination.hasNextPage, true, `pagination: ${JSON.stringify(pagination)}`)
      assert.equal(typeof pagination.nextPageCursor, 'string')

      // flattenToArray follows next_page_cursor (sent back as page_cursor in the query)
      const all = ids(await paginator.flattenToArray())
      assert.equal(new Set(all).size, all.length, `no code twice across pages: ${JSON.stringify(all)}`)
      for (const ac of created) assert.ok(all.includes(ac.access_code_id), `pages lack ${ac.access_code_id}`)
    } finally {
      for (const ac of created) {
        await seam.accessCodes.delete({ access_code_id: ac.access_code_id }).catch(() => {})
      }
    }
  })

  it('surfaces a duplicate code as a 409 duplicate_access_code error', { timeout: 30_000 }, async () => {
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

  it('surfaces a wrong API key as SeamHttpUnauthorizedError', { timeout: 30_000 }, async () => {
    const intruder = SeamHttp.fromApiKey(WRONG_API_KEY, { endpoint: ENDPOINT })
    await assertApiError(intruder.accessCodes.list({ device_id: FRONT_DOOR }), {
      type: 'unauthorized',
      status: 401,
      ErrorClass: SeamHttpUnauthorizedError,
    })
    await assertApiError(intruder.accessCodes.create({ device_id: FRONT_DOOR, code: nextCode() }), {
      type: 'unauthorized',
      status: 401,
      ErrorClass: SeamHttpUnauthorizedError,
    })
  })

  it("keeps another workspace's devices out of reach", { timeout: 30_000 }, async () => {
    const other = SeamHttp.fromApiKey(API_KEY_2, { endpoint: ENDPOINT })
    const workspace = await other.workspaces.get()
    assert.equal(workspace.workspace_id, 'seed_workspace_2')
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
    assert.equal(setSeen.accessCode.code, code)

    const { value: goneSeen } = await pollUntil(
      `time-bound code ${id} to disappear after ends_at`,
      observe,
      ({ value }) => isNotFound({ error: value?.error }),
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
