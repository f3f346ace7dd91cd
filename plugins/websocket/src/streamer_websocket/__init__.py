"""A WebSocket server sink (auth, subscriptions, snapshot, slow-client safety) and
``streamer tail``."""
