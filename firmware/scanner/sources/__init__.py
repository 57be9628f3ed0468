"""Frame sources, chosen by name from config (a dict in firmware.app, not discovery)."""
