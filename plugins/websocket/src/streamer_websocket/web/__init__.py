"""The web view (``web = true``): a page served by the websocket sink on its own port, a
client of the sink's own WebSocket protocol (login, subscriptions, the ``status`` request).

:mod:`.http` reads request heads and writes responses, :mod:`.pages` serves the known static
files, :mod:`.status` builds the status the page asks for; the page itself is in ``static/``.
"""
