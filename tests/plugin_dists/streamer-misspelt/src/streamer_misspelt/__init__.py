"""A sink registration under a hook name that does not exist (``..._sink``, not ``..._sinks``)."""

from streamer import hookimpl


@hookimpl
def streamer_register_sink(register):  # type: ignore[no-untyped-def]
    register("misspelt", object, object)
