"""The ``postgres`` sink: market data stored once per row in PostgreSQL (plain tables, or
TimescaleDB hypertables where the extension is installed), with an on-disk spool for
outages, and ``streamer db migrate``."""
