"""What a plugin implements: sources, transforms and sinks, and what the core hands them.

The core starts every object with ``nursery.start(obj.run, ...)``. ``run`` reports readiness
("connected", "bound", "subscribed") with ``task_status.started()`` and then runs until it is
cancelled. Plugins never receive a nursery: whatever they spawn lives in a nursery that their
own ``run`` opens and owns.

This module does not import trio at run time (the annotations name it; the protocols' ``run``
shows its ``task_status`` default as ``...``, an implementation writes
``trio.TASK_STATUS_IGNORED``): loading the plugins and ``streamer check`` need none of it.
:class:`BaseTransform`, which does, is in :mod:`streamer._base_transform`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, get_args, runtime_checkable

import attrs

from streamer._health import Health
from streamer._metrics import Metrics
from streamer._overflow import Overflow
from streamer._pipeline_view import PipelineView
from streamer.history import History, HistoryRouter, StoredHistory

if TYPE_CHECKING:
    import trio

    from streamer._events import Event
    from streamer._inbox import Inbox


@attrs.frozen
class StreamGap:
    """Part of a source's stream may be missing, for ``symbols`` of ``channel``.

    A source sends it twice through :meth:`Emit.gap`: when a connection is lost
    (``closed=False``; every event up to ``since_ms`` was delivered), and when what was missed
    has been recovered or given up (``closed=True``; ``complete`` tells which). Transforms that
    define ``on_gap`` receive it, so an aggregator can wait for recovered trades instead of
    closing candles without them. It is not part of the wire format: sinks do not receive it
    with their events; a sink that must know (one that records which time ranges it stored
    whole) takes it through :class:`NotesGaps`.

    ``data_type`` names the stream with the gap (a wire ``data_type``): ``"trades"`` for lost
    trades; ``"book"`` for an order book that stopped being exact (``closed`` when a fresh
    snapshot replaced it, ``complete`` then true: a book is whole again with its snapshot,
    although the deltas missed meanwhile are never emitted). A transform that only cares for
    one stream ignores the gaps of the others.
    """

    channel: str
    symbols: tuple[str, ...]
    since_ms: int
    closed: bool = False
    complete: bool = True
    #: The data type whose events may be missing: ``"trades"`` (what candles are built
    #: from), or another, e.g. ``"liquidations"``, which a transform of trades ignores.
    data_type: str = "trades"
    #: The symbols' stream ended for good (delisted, no longer trading: sent once, with
    #: ``closed=True``): nothing more of them follows, so a transform closes what it holds
    #: of them and forgets them.
    ended: bool = False


class Emit(Protocol):
    """How a source (or a transform's ``run``) hands data downstream."""

    async def __call__(self, batch: list[Event]) -> None:
        """Run the inline transforms on ``batch`` and queue the result for each sink; waits
        only when a sink configured with ``overflow = "block"`` is full. Never call it with an
        empty list, and do not reuse the list afterwards."""

    async def gap(self, gap: StreamGap) -> None:
        """Tell the downstream transforms that part of the stream is missing (or recovered)."""

    async def accepted(self) -> None:
        """Wait until every sink downstream (directly or through inline transforms) has
        accepted what was emitted so far: it came back to ``inbox.get()`` after taking it,
        or dropped it under ``overflow = "drop_oldest"``, or stopped. For sources that
        acknowledge their input upstream only once it is handled (the nats source)."""


class FatalError(Exception):
    """Raised by a plugin for a problem a restart cannot fix (port in use, bad credentials).

    The core stops the pipeline and ``streamer run`` exits with status 1 and this message.
    Any other exception from a sink or source is logged and the object is restarted.
    """


@attrs.define(frozen=True)
class Context:
    """What the core tells a plugin object about its place in the pipeline."""

    #: The node's ``name`` in streamer.toml (defaults to its ``type``).
    name: str
    #: The node's ``type`` in streamer.toml, e.g. ``"bybit.linear"``.
    type: str
    #: A logger named ``streamer.<kind>.<name>``; it is rate-limited for repeated messages.
    logger: logging.Logger
    #: Counters reported by ``streamer run`` at shutdown and in periodic stats, and exposed on
    #: ``/metrics`` with the gauges and probes the node adds (see :mod:`streamer._metrics`).
    metrics: Metrics
    #: Names of the nodes feeding this one (empty for sources).
    inputs: tuple[str, ...] = ()
    #: For transforms: the history of the input sources and the stored history of the sinks
    #: that store what those sources produce (:mod:`streamer.history`), filled by the core
    #: once every node is built; empty for sources and sinks.
    history: HistoryRouter = attrs.field(factory=HistoryRouter, eq=False)
    #: Where the node reports its readiness (``/readyz``): see :mod:`streamer._health`.
    health: Health = attrs.field(factory=Health)
    #: A read-only view of every node of the pipeline (status pages): see
    #: :mod:`streamer._pipeline_view`.
    pipeline: PipelineView = attrs.field(factory=PipelineView, eq=False)
    #: Whether a live source (one that does not wait: an exchange's WebSocket) feeds this
    #: node, directly or through transforms; for a source, whether it is live itself. False
    #: when every source upstream reads stored data (``register(..., live=False)``: a
    #: replay, a JetStream stream): nothing is gained by dropping then, so a sink that
    #: buffers events of its own waits for room in its buffer instead of dropping the oldest
    #: (and so holds up its inbox, which blocks the source). See :mod:`streamer._liveness`.
    live_input: bool = True


class Source(Protocol):
    """Produces batches of events (a Bybit WebSocket, a replay file, ...)."""

    async def run(self, emit: Emit, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Stream forever: call ``task_status.started()`` once connected, ``await emit(batch)``
        for each batch. Returning ends this source (the pipeline stops when all sources have).
        """


class Transform(Protocol):
    """Turns batches from its inputs into new batches (e.g. trades into klines).

    ``process`` runs inline, on the task of whoever emitted the batch, so a batch goes from the
    socket through the transform into the sink queues without a single extra task switch
    (docs/background.md, "Batches, not events"). ``run`` hosts anything time-driven (closing a
    kline at a boundary) and emits through the ``emit`` it is given.
    """

    def process(self, batch: Sequence[Event]) -> list[Event]:
        """Return the events this batch produces (may be empty). Must not block or await."""
        ...

    # Optional: ``on_gap`` (:class:`HandlesGaps`), called inline when an input source
    # reports a gap (see :class:`StreamGap`); returns events to emit now.

    async def run(self, emit: Emit, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Background work; call ``task_status.started()`` first. May simply sleep forever."""


class Sink(Protocol):
    """Writes batches somewhere (Redis, clients of a WebSocket server, stdout, ...)."""

    async def run(self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Call ``task_status.started()`` when ready (bound, connected), then loop on
        ``await inbox.get()`` and write what it returns. ``get`` returns an empty list once the
        pipeline is shutting down and the inbox is drained: flush and return then.

        If ``run`` raises, the core logs it and calls ``run`` again with the same inbox after a
        backoff, so ``run`` must be safe to call again on the same object.
        """


#: ``factory(config, context)`` builds a source, transform or sink from its structured config.
Factory = Callable[[Any, Context], Any]


# -- optional capabilities -------------------------------------------------------------------
# What a plugin object or config class may add to the contract above. The core finds each
# with ``isinstance(obj, <protocol>)`` and nothing else, so a capability is exactly what its
# protocol declares; :func:`check_capabilities` refuses one whose shape the core cannot use.


@runtime_checkable
class HasHistory(Protocol):
    """A **source** whose stream's past can be asked about (:mod:`streamer.history`).

    Read once every node is built: the core adds it to the ``context.history`` of every
    transform downstream of the source."""

    history: History


@runtime_checkable
class DrivesClock(Protocol):
    """A **source** that drives trio's clock, e.g. a replay running time from its recording.

    Read by ``streamer run`` when the pipeline is built (``Pipeline.trio_clock()``) and given
    to ``trio.run(clock=...)``; at most one source of a pipeline may have it."""

    trio_clock: trio.abc.Clock


@runtime_checkable
class HandlesGaps(Protocol):
    """A **transform** that hears of stream gaps (:class:`StreamGap`) of its input sources.

    Called inline, on the task of the source that reported the gap, like ``process``: it must
    not block. The events it returns are emitted downstream at once.

    ``gap.data_type`` says which events may be missing: ``"trades"`` (the default) or another
    data type, e.g. ``"liquidations"`` (the Bybit source's ``allLiquidation`` connections). A
    transform acts on the gaps of what it reads and ignores the others: ``klines.from_trades``
    holds candles for ``"trades"`` gaps only.

    ``gap.ended`` (with ``closed=True``): the symbols' stream ended for good (delisted, no
    longer trading; a source that follows its market's listings sends it once). Nothing of
    them follows: close what is held of them now and forget them (``klines.from_trades``
    emits their open candles closed and keeps no state of them)."""

    def on_gap(self, gap: StreamGap) -> list[Event]: ...


@runtime_checkable
class NotesGaps(Protocol):
    """A **sink** that hears of the stream gaps (:class:`StreamGap`) of the sources upstream
    of it (directly or through transforms), in their place among its events: a sink that
    records which time ranges it stored whole must not count a range a source lost.

    Called inline, on the task of the source that reported the gap (it must not block),
    once the events that source emitted before it are queued into the sink's inbox, maybe
    not taken yet. ``position`` places the gap among them: it comes after the events before
    :attr:`Inbox.position` ``position`` of the sink's inbox and before the rest (the events a
    ``get`` returns start at :attr:`Inbox.taken_from`)."""

    def note_gap(self, gap: StreamGap, position: int) -> None: ...


@runtime_checkable
class HasStoredHistory(Protocol):
    """A **sink** that can answer for the past of what it stored
    (:class:`streamer.history.StoredHistory`: the trades of a time range, summed, when it
    holds every one of them).

    Read once every node is built: the core adds it to ``context.history.stored`` of every
    transform that reads (directly or through transforms) a source this sink takes directly
    (not through a transform, which could drop some of the source's events), where
    ``klines.from_trades`` asks it for its first candles before it asks the source."""

    stored_history: StoredHistory


@runtime_checkable
class ReportsBusy(Protocol):
    """A **sink** that says what it is blocked in: ``busy_with`` is set while it is inside a
    call that may hang (a write to a pipe nobody reads), ``None`` otherwise.

    Read when the sink is reported as stalled, to name the cause in the warning."""

    busy_with: str | None


@runtime_checkable
class HoldsEvents(Protocol):
    """A **sink** that keeps events it took from its inbox in a buffer of its own (rows
    waiting for their file, a write in progress), so that the batch it took last is not
    the measure of what it has not written.

    ``held_events`` returns how many events the sink took and has neither written nor
    counted in its own losses (:meth:`Metrics.lost`), the write in progress included. The
    core counts that, instead of the batch the sink took last, in ``lost_at_shutdown`` when
    the pipeline stops (after the sink's ``run`` ended, or when the hard stop gives up on a
    sink blocked where cancellation cannot reach) and in ``lost_after_stop`` when the sink
    stops or is disabled; a restart counts nothing (the sink still holds its buffer). Called
    on the trio thread, possibly while the sink's worker thread is blocked: it must not
    block. Its answer is final: whatever the sink still writes after it is not counted as
    written (already counted as lost)."""

    def held_events(self) -> int: ...


@runtime_checkable
class Validates(Protocol):
    """A **config class** (of any node, or the ``[streamer]`` table) with checks that depend
    on the environment: a variable that must be set, a directory that must exist.

    Called by ``streamer check`` and ``streamer run`` once the table is structured; each
    message returned is reported under the node's path."""

    def validate(self, environ: Mapping[str, str]) -> list[str]: ...


@runtime_checkable
class HasCheckLines(Protocol):
    """A **config class** that adds lines to ``streamer check``'s listing of its node (the
    Bybit sources print their shard's symbols). Called by ``streamer check`` only."""

    def check_lines(self) -> list[str]: ...


@runtime_checkable
class HasShutdownTimeout(Protocol):
    """A **sink config class** with a ``shutdown_timeout`` of its own (seconds it takes to
    flush at shutdown). Read when the pipeline stops: the sinks get that long plus a second
    to report what they could not write, when it is longer than ``[streamer]
    shutdown_timeout``."""

    shutdown_timeout: float


@runtime_checkable
class HasDefaultOverflow(Protocol):
    """A **sink config class** whose ``overflow`` default is not ``"block"`` (the console's
    ``"drop_oldest"``): a class attribute. Read when the configuration is loaded, for every
    sink whose table does not set ``overflow``."""

    default_overflow: ClassVar[Overflow]


#: Every optional capability, in the order docs/plugin_hooks.md lists them.
CAPABILITIES: tuple[type, ...] = (HasHistory, DrivesClock, HandlesGaps, NotesGaps,
                                  HasStoredHistory, ReportsBusy, HoldsEvents, Validates,
                                  HasCheckLines, HasShutdownTimeout, HasDefaultOverflow)
#: Which a node object of each kind may have: only those are looked for (and checked), so a
#: sink's unrelated ``history`` attribute is none of the core's business.
NODE_CAPABILITIES: dict[str, tuple[type, ...]] = {
    "source": (HasHistory, DrivesClock), "transform": (HandlesGaps,),
    "sink": (NotesGaps, HasStoredHistory, ReportsBusy, HoldsEvents)}
#: Which a config class of each kind of node may have.
CONFIG_CAPABILITIES: dict[str, tuple[type, ...]] = {
    "source": (Validates, HasCheckLines), "transform": (Validates, HasCheckLines),
    "sink": (Validates, HasCheckLines, HasShutdownTimeout, HasDefaultOverflow)}


def _is_trio_clock(value: object) -> bool:
    import trio  # only a source that drives the clock gets here, when the pipeline is built

    return isinstance(value, trio.abc.Clock)


#: What the attributes of the capabilities must hold: (attribute, test, what it must be).
_VALUES: dict[type, tuple[str, Callable[[Any], bool], str]] = {
    HasHistory: ("history", lambda v: v is not None, "a streamer.history.History"),
    HasStoredHistory: ("stored_history",
                       lambda v: inspect.iscoroutinefunction(getattr(v, "trades_summaries",
                                                                     None)),
                       "a streamer.history.StoredHistory (an async trades_summaries)"),
    DrivesClock: ("trio_clock", _is_trio_clock, "a trio.abc.Clock"),
    ReportsBusy: ("busy_with", lambda v: v is None or isinstance(v, str), "a str or None"),
    HasShutdownTimeout: ("shutdown_timeout",
                         lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                         "a number of seconds"),
    HasDefaultOverflow: ("default_overflow", lambda v: v in get_args(Overflow),
                         " or ".join(repr(o) for o in get_args(Overflow))),
}


def capability_methods(protocol: type) -> dict[str, inspect.Signature]:
    """The methods ``protocol`` declares, with their signatures (``self`` left out)."""
    out = {}
    for name, value in vars(protocol).items():
        if inspect.isfunction(value) and not name.startswith("_"):
            signature = inspect.signature(value)
            out[name] = signature.replace(parameters=list(signature.parameters.values())[1:])
    return out


def shown_signature(signature: inspect.Signature) -> str:
    """``signature`` as written in the source (annotations are strings here)."""
    return str(signature).replace("'", "")


def check_capabilities(obj: object, among: Sequence[type] = CAPABILITIES) -> list[type]:
    """The capabilities ``among`` that ``obj`` (a node object, a config instance or class) has
    (see :data:`NODE_CAPABILITIES` and :data:`CONFIG_CAPABILITIES`); raise
    :class:`TypeError` naming the first one it declares in a shape the core cannot use (a
    method it cannot call with the protocol's arguments, or an ``async`` one, or an
    attribute holding the wrong kind of value), so the mistake shows when the pipeline is
    built rather than when the capability is first needed."""
    found = []
    is_class = isinstance(obj, type)
    owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    for protocol in among:
        if not isinstance(obj, protocol):
            continue
        for name, wanted in capability_methods(protocol).items():
            _check_method(obj, owner, name, wanted, protocol.__name__)
        check = _VALUES.get(protocol)
        # A config class holds its fields' descriptors, not values: only class attributes.
        if check is not None and (not is_class or protocol is HasDefaultOverflow):
            attribute, fits, what = check
            value = getattr(obj, attribute)
            if not fits(value):
                raise TypeError(f"{owner}.{attribute} must be {what} "
                                f"({protocol.__name__}), got {value!r}")
        found.append(protocol)
    return found


def _check_method(obj: object, owner: str, name: str, wanted: inspect.Signature,
                  protocol: str) -> None:
    method = getattr(obj, name)
    shown, want = f"{owner}.{name}", f"def {name}{shown_signature(wanted)}"
    if not callable(method):
        raise TypeError(f"{shown} is not a method; {protocol} wants {want}")
    if inspect.iscoroutinefunction(method):
        raise TypeError(f"{shown} is async; {protocol} wants a plain {want} (the core calls "
                        "it without awaiting)")
    actual = inspect.signature(method)
    if isinstance(obj, type) and inspect.isfunction(inspect.getattr_static(obj, name)):
        # Looked up on the class, ``self`` is not bound yet: as an instance would see it.
        actual = actual.replace(parameters=list(actual.parameters.values())[1:])
    try:
        actual.bind(*[None] * len(wanted.parameters))
    except TypeError:
        raise TypeError(f"{shown}{shown_signature(actual)} cannot be called as {protocol} "
                        f"calls it: {want}") from None
