"""Subscriptions over channels the sink does not know in advance.

An arg without ``channel`` means every channel, including ones that appear later; the
result of any sequence of requests must be what naming every channel one by one gives
(the old model, where the channels were a fixed list). The reference below is that model,
over a fixed universe of channels; hypothesis drives both with the same requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer_websocket.subscription import (
    DATA_TYPES,
    MAX_CARVED,
    Subscription,
    SubscriptionError,
    parse_args,
)

CHANNELS = ("linear", "spot", "futures")
SYMBOLS = ("A", "B", "C")


class Expanded:
    """The reference: every arg expanded over the fixed ``CHANNELS``."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], set[str] | None] = {}

    def keys(self, arg: dict[str, Any]) -> list[tuple[str, str]]:
        channels = [arg["channel"]] if "channel" in arg else CHANNELS
        types = [arg["data_type"]] if "data_type" in arg else DATA_TYPES
        return [(c, d) for c in channels for d in types]

    def subscribe(self, args: list[dict[str, Any]]) -> None:
        for arg in args:
            for key in self.keys(arg):
                symbols = arg.get("symbols")
                held = self.table.get(key, set())
                if symbols is None or held is None:
                    self.table[key] = None
                else:
                    self.table[key] = held | set(symbols)

    def unsubscribe(self, args: list[dict[str, Any]]) -> None:
        for arg in args:
            if "symbols" in arg and any(
                    k in self.table and self.table[k] is None for k in self.keys(arg)):
                raise SubscriptionError("all symbols")
        for arg in args:
            for key in self.keys(arg):
                if key not in self.table:
                    continue
                held = self.table[key]
                if "symbols" not in arg:
                    del self.table[key]
                    continue
                assert held is not None
                held = held - set(arg["symbols"])
                if held:
                    self.table[key] = held
                else:
                    del self.table[key]

    def matches(self, channel: str, data_type: str, symbol: str) -> bool:
        if (channel, data_type) not in self.table:
            return False
        held = self.table[(channel, data_type)]
        return held is None or symbol in held


arg_strategy = st.fixed_dictionaries({}, optional={
    "channel": st.sampled_from(CHANNELS),
    "data_type": st.sampled_from(DATA_TYPES),
    "symbols": st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=3),
})
request_strategy = st.tuples(st.sampled_from(["subscribe", "unsubscribe"]),
                             st.lists(arg_strategy, min_size=1, max_size=3))


@settings(max_examples=400, deadline=None)
@given(st.booleans(), st.lists(request_strategy, max_size=12))
def test_any_channel_behaves_as_every_channel_named(never_subscribed: bool, requests) -> None:
    sub = Subscription.of([{}]) if never_subscribed else Subscription()
    ref = Expanded()
    if never_subscribed:
        ref.subscribe([{}])
    for op, raw in requests:
        args = parse_args(raw)
        if op == "subscribe":
            sub.subscribe(args, limit=None)
            ref.subscribe(args)
        else:
            try:
                ref.unsubscribe(args)
            except SubscriptionError:
                with pytest.raises(SubscriptionError, match="cannot unsubscribe single"):
                    sub.unsubscribe(args)
                continue
            sub.unsubscribe(args)
        for channel in CHANNELS:
            for data_type in DATA_TYPES:
                for symbol in SYMBOLS:
                    assert sub.matches(channel, data_type, symbol) == ref.matches(
                        channel, data_type, symbol), (channel, data_type, symbol)


def test_a_channel_seen_after_the_subscription_is_selected() -> None:
    sub = Subscription.of(parse_args([{"data_type": "trades", "symbols": ["btc"]}]))
    assert sub.matches("futures", "trades", "BTC")
    assert ("an-exchange-we-never-heard-of", "trades") in sub
    assert sub.symbols(("an-exchange-we-never-heard-of", "trades")) == frozenset({"BTC"})
    assert not sub.matches("futures", "klines", "BTC")


def test_carving_channels_out_of_every_channel_is_bounded() -> None:
    sub = Subscription.of([{}])
    sub.unsubscribe(parse_args([{"channel": f"c{i}"} for i in range(MAX_CARVED)]))
    assert not sub.matches("c0", "trades", "X") and sub.matches("other", "trades", "X")
    with pytest.raises(SubscriptionError, match=f"at most {MAX_CARVED} channels"):
        sub.unsubscribe(parse_args([{"channel": "one-more"}]))
    assert sub.matches("one-more", "trades", "X")  # refused: nothing changed
    # Unsubscribing the data type everywhere forgets its carve-outs.
    sub.unsubscribe(parse_args([{"data_type": "trades"}]))
    sub.subscribe(parse_args([{"data_type": "trades"}]), limit=None)
    assert sub.matches("c0", "trades", "X")


@pytest.mark.parametrize("channel", ["a.b", "a:b", "a/b", "*", "", "x" * 33, "-a", 5, None])
def test_channel_names_that_would_break_keys_or_subjects_are_refused(channel) -> None:
    if channel is None:
        assert parse_args([{"channel": None}]) == [{}]  # absent, as JSON null
        return
    with pytest.raises(SubscriptionError, match="bad channel name"):
        parse_args([{"channel": channel}])
