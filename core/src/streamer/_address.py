"""``host:port`` of the metrics listener, parsed where the configuration is checked.

Apart from :mod:`streamer._metrics_http` so that ``streamer check`` of a configuration with
``metrics = "..."`` does not import the listener and ``prometheus_client``.
"""

from __future__ import annotations


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` / ``":9464"`` -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"expected host:port such as '127.0.0.1:9464', got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)
