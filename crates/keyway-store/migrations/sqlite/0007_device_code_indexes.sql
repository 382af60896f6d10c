-- A device's codes looked up by slot (what the lock holds: the engine reads it every round)
-- and by PIN (clash checks on create and update), without walking every code the device ever
-- had: with thousands of codes on one lock, each round and each create used to read them all.
CREATE INDEX access_codes_device_slot ON access_codes (device_id, slot) WHERE slot IS NOT NULL;
CREATE INDEX access_codes_device_code ON access_codes (device_id, code);
