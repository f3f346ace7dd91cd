"""streamer's NATS JetStream plugin: the ``nats`` sink and the ``nats`` source."""
