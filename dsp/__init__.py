"""Pure signal processing over numpy frames (no I/O, no clock)."""
