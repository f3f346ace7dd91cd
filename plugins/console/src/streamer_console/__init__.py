"""The console sink: one JSON line per envelope on stdout, or a compact table."""
