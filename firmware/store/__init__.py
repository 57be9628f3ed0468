"""Everything that touches the SD card: sealing visit records and keeping them durable."""
