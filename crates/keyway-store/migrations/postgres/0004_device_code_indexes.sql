-- A device's codes looked up by slot (the engine reads them every round) and by PIN (clash
-- checks on create and update), without walking every code the device ever had.
CREATE INDEX access_codes_device_slot ON access_codes (device_id, slot) WHERE slot IS NOT NULL;
CREATE INDEX access_codes_device_code ON access_codes (device_id, code);
