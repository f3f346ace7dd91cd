"""The ``files`` sink: events to partitioned JSON lines (zstd) or Parquet files."""
