"""Subscribing one connection's topics: requests in chunks, every ack checked, refusals isolated.

Each subscribe request carries a ``req_id``; the connection's reader hands every op reply to
:meth:`Subscription.on_reply`, which wakes the request it answers. Bybit refuses a whole
request for one bad topic (``error:handler not found,topic:T`` linear, ``Invalid symbol :[T]``
spot), so a refused request is bisected until the bad topic stands alone; it is logged,
counted (``refused_topics``) and left out of every later (re)subscribe.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import msgspec
import trio

from streamer import Metrics
from streamer_bybit.decode import Message

_NAMED_TOPIC = re.compile(r"topic:(\S+)|\[([^\]]+)\]")
_encode = msgspec.json.Encoder().encode


class AckTimeout(Exception):
    """A subscribe request got no answer in time."""


def named_topic(ret_msg: str) -> str | None:
    """The topic Bybit names in an error (``...,topic:T`` linear, ``[T]`` spot)."""
    m = _NAMED_TOPIC.search(ret_msg)
    if m is None:
        return None
    return m.group(1) or m.group(2)


class TextSender(Protocol):
    async def send_text(self, text: str) -> None: ...


class Subscription:
    """The topics of one connection and what Bybit made of them (``refused``)."""

    def __init__(
        self,
        index: int,
        topics: list[str],
        *,
        chunk: int,
        ack_timeout: float,
        metrics: Metrics,
        logger: logging.Logger,
        name: str,
    ) -> None:
        self.index = index
        self.topics = topics
        self.chunk = chunk
        self.ack_timeout = ack_timeout
        self.metrics = metrics
        self.logger = logger
        self.name = name
        #: Topics Bybit refused, with its message; left out from then on.
        self.refused: dict[str, str] = {}
        #: Subscribe requests sent so far (their req_ids are ``index.n``).
        self.requests = 0
        self._acks: dict[str, list[Any]] = {}
        #: Topics subscribed on the current socket (what an unsubscribe may name).
        self.on_socket: set[str] = set()
        #: One request at a time: the start-up subscribe and live (un)subscribes take turns.
        self._turn = trio.Lock()

    @property
    def active_topics(self) -> list[str]:
        return [t for t in self.topics if t not in self.refused]

    def new_session(self) -> None:
        """A new socket: no request of the last one will be answered."""
        self._acks.clear()
        self.on_socket.clear()

    def on_reply(self, reply: Message) -> bool:
        """``reply`` answers a pending request: hand it over (True). A reply without a
        ``req_id`` answers the one request pending, if only one is (requests go one at a
        time: each waits for its ack)."""
        if reply.req_id:
            pending = self._acks.pop(reply.req_id, None)
        elif reply.type == "COMMAND_RESP" and len(self._acks) == 1:
            pending = self._acks.pop(next(iter(self._acks)))
        else:
            pending = None
        if pending is None:
            return False
        pending[1] = reply
        pending[0].set()
        return True

    async def subscribe_all(self, ws: TextSender) -> None:
        """Subscribe every active topic not subscribed on this socket yet, ``chunk`` per
        request (topics added meanwhile too); raises AckTimeout (or the socket's error) when
        that fails."""
        async with self._turn:
            while True:
                pending = [t for t in self.active_topics if t not in self.on_socket]
                if not pending:
                    return
                chunk = pending[: self.chunk]
                await self.subscribe(ws, chunk)
                self.on_socket.update(chunk)

    async def unsubscribe(self, ws: TextSender, topics: list[str]) -> None:
        """Unsubscribe ``topics`` (already left out of ``topics``) from this socket."""
        async with self._turn:
            gone = [t for t in topics if t in self.on_socket]
            for i in range(0, len(gone), self.chunk):
                args = gone[i : i + self.chunk]
                reply = await self._request(ws, args, op="unsubscribe")
                self.on_socket.difference_update(args)
                if not reply.success:  # the topics stop anyway once the socket is gone
                    self.logger.warning("%s: Bybit refused to unsubscribe %s (%s)", self.name,
                                        ", ".join(args), reply.ret_msg)

    async def _request(self, ws: TextSender, args: list[str], op: str = "subscribe"
                       ) -> Message:
        self.requests += 1
        req_id = f"{self.index}.{self.requests}"
        pending: list[Any] = [trio.Event(), None]
        self._acks[req_id] = pending
        await ws.send_text(_encode({"op": op, "args": args, "req_id": req_id}).decode())
        with trio.move_on_after(self.ack_timeout):
            await pending[0].wait()
        self._acks.pop(req_id, None)
        if pending[1] is None:
            raise AckTimeout(
                f"no answer to a{'n' if op[0] == 'u' else ''} {op} of {len(args)} topics in "
                f"{self.ack_timeout:g} s"
            )
        reply: Message = pending[1]
        return reply

    async def subscribe(self, ws: TextSender, args: list[str]) -> None:
        """Subscribe ``args``; isolate and drop refused topics, keep the rest subscribed.

        Bybit refuses a whole request for one bad topic, so a refused request is bisected
        until the bad topic stands alone. "already subscribed" means that topic is fine, but
        the rest of its request was not subscribed: it is re-sent without it.
        """
        if not args:
            return
        reply = await self._request(ws, args)
        if reply.type == "COMMAND_RESP":  # option: subscribes the rest, names the refused
            failed = _fail_topics(reply)
            for topic in failed:
                if topic in args:
                    self._refuse(topic, "in failTopics")
            if reply.success or failed:
                return
        elif reply.success:
            return
        msg = reply.ret_msg
        named = named_topic(msg)
        if "already subscribed" in msg:
            if len(args) == 1:
                return
            if named in args:
                await self.subscribe(ws, [a for a in args if a != named])
                return
        elif len(args) == 1:
            self._refuse(args[0], msg)
            return
        half = len(args) // 2
        await self.subscribe(ws, args[:half])
        await self.subscribe(ws, args[half:])

    async def resubscribe(self, ws: TextSender, topic: str) -> None:
        """Unsubscribe ``topic``, then subscribe it again (its stream starts over: an order
        book's with a fresh snapshot). Both acks are awaited; a refused unsubscribe (the topic
        was not subscribed) does not matter. Takes its turn like every other request."""
        async with self._turn:
            if topic not in self.topics:
                return  # removed meanwhile (delisted): not to be subscribed again
            await self._request(ws, [topic], "unsubscribe")
            await self.subscribe(ws, [topic])

    def _refuse(self, topic: str, ret_msg: str) -> None:
        self.refused[topic] = ret_msg
        self.metrics.inc("refused_topics")
        self.logger.warning(
            "%s: Bybit refused topic %s (%s); the other topics stay subscribed",
            self.name,
            topic,
            ret_msg,
        )


_ack_data_decoder = msgspec.json.Decoder(dict[str, Any])


def _fail_topics(reply: Message) -> list[str]:
    """An option ack's ``data.failTopics`` (none when the data is not that shape)."""
    try:
        data = _ack_data_decoder.decode(reply.data) if reply.data else {}
    except msgspec.DecodeError:
        return []
    failed = data.get("failTopics")
    return [t for t in failed if isinstance(t, str)] if isinstance(failed, list) else []


__all__ = ["AckTimeout", "Subscription", "TextSender", "named_topic"]
