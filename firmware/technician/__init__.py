"""A technician's commands over SSH: status, selftest (aim and provision sit beside them in firmware/)."""
