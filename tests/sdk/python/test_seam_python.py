"""Keyway against Seam's official Python SDK (PyPI `seam`).

Every request goes through the SDK's own methods, so verbs and encodings are the SDK's:
GET with a query string (plus ``_strict=true``) for reads, POST+JSON for create and
simulate, PATCH+JSON for update and DELETE with a query string for delete.

The server comes from ``KEYWAY_URL``; the key from ``KEYWAY_API_KEY``
(default ``seam_apikey1_token``). ``tests/sdk/run.sh`` starts a server and sets both.
"""

import os
import random
import time
from datetime import datetime, timedelta, timezone

import pytest
from seam import Seam
from seam.exceptions import SeamHttpApiError, SeamHttpUnauthorizedError

ENDPOINT = os.environ.get("KEYWAY_URL")
API_KEY = os.environ.get("KEYWAY_API_KEY") or "seam_apikey1_token"
API_KEY_2 = os.environ.get("KEYWAY_API_KEY_2") or "seam_apikey2_token"
# Syntactically valid (starts with seam_, so the SDK sends it) but unknown.
WRONG_API_KEY = "seam_wrongkey_0000000000000000"

FRONT_DOOR = "august_device_1"
BACK_DOOR = "august_device_2"
SCHLAGE = "schlage_device_id"

ACCESS_CODE_EVENTS = [
    "access_code.created",
    "access_code.set_on_device",
    "access_code.removed_from_device",
    "access_code.deleted",
]

if not ENDPOINT:
    raise RuntimeError(
        "KEYWAY_URL is not set: point it at a running Keyway server, "
        "e.g. http://127.0.0.1:8080 (tests/sdk/run.sh does this)"
    )

_used_codes = set()


def next_code(lead):
    """A distinct random 6-digit code. Python's codes start with 3 (managed) or 4
    (unmanaged); the JS suites use 5-8, so runs never collide, and no code starts
    with 1, which the Schlage lock's `cannot_start_with_12` constraint could reject."""
    while True:
        code = str(lead) + "".join(random.choice("0123456789") for _ in range(5))
        if code not in _used_codes:
            _used_codes.add(code)
            return code


def iso_in(seconds):
    moment = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def poll_until(what, fn, done, timeout=15.0, interval=0.2):
    """Calls fn every `interval` s until done(value, error) holds, for at most `timeout` s.
    Returns (value, error, arrived_at) of the last call; fails with the last observation."""
    deadline = time.monotonic() + timeout
    while True:
        value, error = None, None
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - handed to `done`
            error = exc
        arrived = datetime.now(timezone.utc)
        if done(value, error):
            return value, error, arrived
        if time.monotonic() >= deadline:
            last = describe(error) if error is not None else repr(value)
            pytest.fail(f"Timed out after {timeout} s waiting for {what}; last observation: {last}")
        time.sleep(interval)


def describe(error):
    return (
        f"{type(error).__name__}: {error} "
        f"(code={getattr(error, 'code', None)!r}, status_code={getattr(error, 'status_code', None)!r})"
    )


def is_not_found(error):
    return isinstance(error, SeamHttpApiError) and error.status_code == 404


def assert_api_error(excinfo, code, status_code):
    error = excinfo.value
    assert error.status_code == status_code, describe(error)
    assert error.code == code, describe(error)
    assert error.request_id, "the SDK reads a seam-request-id header on errors"


@pytest.fixture(scope="module")
def seam():
    return Seam(api_key=API_KEY, endpoint=ENDPOINT)


def wait_for_status(seam, access_code_id, status, timeout=15.0):
    value, _, _ = poll_until(
        f'access code {access_code_id} to reach status "{status}"',
        lambda: seam.access_codes.get(access_code_id=access_code_id),
        lambda value, error: value is not None and value.status == status,
        timeout=timeout,
    )
    return value


def ids(access_codes):
    return [ac.access_code_id for ac in access_codes]


def test_reads_workspace_and_sandbox_locks(seam):
    assert seam.workspaces.get().workspace_id == "seed_workspace_1"

    device_ids = [d.device_id for d in seam.devices.list()]
    for device_id in (FRONT_DOOR, BACK_DOOR, "schlage_device_id"):
        assert device_id in device_ids, device_ids

    assert FRONT_DOOR in [d.device_id for d in seam.locks.list()]
    assert seam.locks.get(device_id=FRONT_DOOR).device_id == FRONT_DOOR
    assert seam.devices.get(device_id=FRONT_DOOR).device_id == FRONT_DOOR

    generated = seam.access_codes.generate_code(device_id=FRONT_DOOR)
    assert generated.device_id == FRONT_DOOR
    assert generated.code.isdigit() and 4 <= len(generated.code) <= 6, generated.code


def test_access_code_lifecycle(seam):
    since = iso_in(-1)
    code = next_code(3)
    name = f"SDK python {code}"

    # create: POST /access_codes/create
    created = seam.access_codes.create(device_id=FRONT_DOOR, code=code, name=name)
    assert isinstance(created.access_code_id, str)
    assert created.device_id == FRONT_DOOR
    assert created.code == code
    assert created.name == name
    assert created.type == "ongoing"
    assert created.status == "setting"
    assert created.is_managed is True
    assert created.errors == [] and created.warnings == []
    access_code_id = created.access_code_id

    # list by device and get: GET with a query string
    listed = seam.access_codes.list(device_id=FRONT_DOOR)
    assert access_code_id in ids(listed)
    assert all(ac.device_id == FRONT_DOOR for ac in listed)
    fetched = seam.access_codes.get(access_code_id=access_code_id)
    assert fetched.access_code_id == access_code_id
    assert fetched.code == code

    wait_for_status(seam, access_code_id, "set")

    # update name and code: PATCH /access_codes/update (the SDK returns None)
    new_code = next_code(3)
    new_name = f"{name} renamed"
    assert seam.access_codes.update(access_code_id=access_code_id, name=new_name, code=new_code) is None
    after_update = seam.access_codes.get(access_code_id=access_code_id)
    assert after_update.name == new_name
    assert after_update.code == new_code
    assert after_update.status in ("setting", "set")
    assert wait_for_status(seam, access_code_id, "set").code == new_code

    # get by device_id + code finds the new code, not the old one
    assert seam.access_codes.get(device_id=FRONT_DOOR, code=new_code).access_code_id == access_code_id
    with pytest.raises(SeamHttpApiError) as excinfo:
        seam.access_codes.get(device_id=FRONT_DOOR, code=code)
    assert_api_error(excinfo, "access_code_not_found", 404)

    # a code typed at the keypad: POST /access_codes/simulate/create_unmanaged_access_code
    unmanaged_code = next_code(4)
    unmanaged = seam.access_codes.simulate.create_unmanaged_access_code(
        device_id=FRONT_DOOR, name=f"Keypad {unmanaged_code}", code=unmanaged_code
    )
    assert unmanaged.is_managed is False
    assert unmanaged.status == "set"
    assert unmanaged.code == unmanaged_code
    assert unmanaged.device_id == FRONT_DOOR

    # GET /access_codes/unmanaged/list and /unmanaged/get
    unmanaged_list = seam.access_codes.unmanaged.list(device_id=FRONT_DOOR)
    assert unmanaged.access_code_id in ids(unmanaged_list)
    assert access_code_id not in ids(unmanaged_list)
    assert all(ac.is_managed is False for ac in unmanaged_list)
    unmanaged_got = seam.access_codes.unmanaged.get(access_code_id=unmanaged.access_code_id)
    assert unmanaged_got.code == unmanaged_code
    assert unmanaged_got.is_managed is False
    assert unmanaged.access_code_id not in ids(seam.access_codes.list(device_id=FRONT_DOOR))

    # the keypad code is on the lock, so a managed code with the same PIN is a duplicate
    with pytest.raises(SeamHttpApiError) as excinfo:
        seam.access_codes.create(device_id=FRONT_DOOR, code=unmanaged_code, name="clash with keypad code")
    assert_api_error(excinfo, "duplicate_access_code", 409)

    # delete: DELETE /access_codes/delete?access_code_id= (the SDK returns None)
    assert seam.access_codes.delete(access_code_id=access_code_id) is None
    _, error, _ = poll_until(
        f"deleted access code {access_code_id} to answer 404",
        lambda: seam.access_codes.get(access_code_id=access_code_id),
        lambda value, error: is_not_found(error),
        timeout=10.0,
    )
    assert error.code == "access_code_not_found", describe(error)
    assert access_code_id not in ids(seam.access_codes.list(device_id=FRONT_DOOR))

    # events: GET /events/list?access_code_id=
    events, _, _ = poll_until(
        f"events {', '.join(ACCESS_CODE_EVENTS)} for {access_code_id}",
        lambda: seam.events.list(access_code_id=access_code_id, since=since),
        lambda value, error: value is not None
        and all(any(e.event_type == t for e in value) for t in ACCESS_CODE_EVENTS),
        timeout=5.0,
    )
    assert all(e.access_code_id == access_code_id for e in events)


def test_pages_through_codes_with_the_sdk_paginator(seam):
    created = []
    try:
        for _ in range(3):
            code = next_code(3)
            created.append(seam.access_codes.create(device_id=SCHLAGE, code=code, name=f"page {code}"))
        paginator = seam.create_paginator(seam.access_codes.list, {"device_id": SCHLAGE, "limit": 2})
        first_page, pagination = paginator.first_page()
        assert len(first_page) == 2, "limit=2 gives a page of 2"
        assert pagination.has_next_page is True, pagination
        assert isinstance(pagination.next_page_cursor, str), pagination

        # flatten_to_list follows next_page_cursor (sent back as page_cursor in the query)
        all_ids = ids(paginator.flatten_to_list())
        assert len(set(all_ids)) == len(all_ids), f"no code twice across pages: {all_ids}"
        for ac in created:
            assert ac.access_code_id in all_ids
    finally:
        for ac in created:
            try:  # cleanup only
                seam.access_codes.delete(access_code_id=ac.access_code_id)
            except Exception:  # noqa: BLE001
                pass


def test_duplicate_code_is_409(seam):
    code = next_code(3)
    first = seam.access_codes.create(device_id=FRONT_DOOR, code=code, name=f"dup {code}")
    try:
        with pytest.raises(SeamHttpApiError) as excinfo:
            seam.access_codes.create(device_id=FRONT_DOOR, code=code, name=f"dup again {code}")
        assert_api_error(excinfo, "duplicate_access_code", 409)
    finally:
        try:  # cleanup only: the lifecycle test checks delete itself
            seam.access_codes.delete(access_code_id=first.access_code_id)
        except Exception:  # noqa: BLE001
            pass


def test_wrong_api_key_is_unauthorized():
    intruder = Seam(api_key=WRONG_API_KEY, endpoint=ENDPOINT)
    with pytest.raises(SeamHttpUnauthorizedError) as excinfo:
        intruder.access_codes.list(device_id=FRONT_DOOR)
    assert_api_error(excinfo, "unauthorized", 401)
    with pytest.raises(SeamHttpUnauthorizedError) as excinfo:
        intruder.access_codes.create(device_id=FRONT_DOOR, code=next_code(3))
    assert_api_error(excinfo, "unauthorized", 401)


def test_other_workspace_devices_out_of_reach():
    other = Seam(api_key=API_KEY_2, endpoint=ENDPOINT)
    assert other.workspaces.get().workspace_id == "seed_workspace_2"
    assert list(other.devices.list()) == []
    with pytest.raises(SeamHttpApiError) as excinfo:
        other.access_codes.create(device_id=FRONT_DOOR, code=next_code(3))
    assert_api_error(excinfo, "device_not_found", 404)


def test_time_bound_code_unset_then_set_then_gone(seam):
    code = next_code(3)
    starts_at = iso_in(2)
    ends_at = iso_in(6)
    created = seam.access_codes.create(
        device_id=BACK_DOOR, code=code, name=f"window {code}", starts_at=starts_at, ends_at=ends_at
    )
    access_code_id = created.access_code_id
    assert created.type == "time_bound"
    assert created.status == "unset"
    assert parse_iso(created.starts_at) == parse_iso(starts_at)
    assert parse_iso(created.ends_at) == parse_iso(ends_at)

    before = seam.access_codes.get(access_code_id=access_code_id)
    if datetime.now(timezone.utc) < parse_iso(starts_at) - timedelta(milliseconds=200):
        assert before.status == "unset", "a future code is not on the lock yet"

    tolerance = timedelta(milliseconds=250)

    # An observation that arrived before starts_at (ends_at) proves the change came too early.
    value, _, arrived = poll_until(
        f'time-bound code {access_code_id} to reach status "set"',
        lambda: seam.access_codes.get(access_code_id=access_code_id),
        lambda value, error: value is not None and value.status == "set",
    )
    assert arrived >= parse_iso(starts_at) - tolerance, f"set at {arrived}, starts_at {starts_at}"
    assert value.code == code

    _, error, arrived = poll_until(
        f"time-bound code {access_code_id} to disappear after ends_at",
        lambda: seam.access_codes.get(access_code_id=access_code_id),
        lambda value, error: is_not_found(error),
    )
    assert arrived >= parse_iso(ends_at) - tolerance, f"gone at {arrived}, ends_at {ends_at}"
    assert error.code == "access_code_not_found", describe(error)
