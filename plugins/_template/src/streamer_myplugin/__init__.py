"""A streamer plugin made from plugins/_template."""
