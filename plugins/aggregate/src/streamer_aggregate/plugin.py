"""Registers the ``klines.from_trades``, ``klines.passthrough``, ``klines.verify`` and
``books.top`` transforms."""

from __future__ import annotations

from streamer import RegisterType, hookimpl
from streamer_aggregate.books_top import BooksTop, BooksTopConfig
from streamer_aggregate.passthrough import KlinePassthrough, PassthroughConfig
from streamer_aggregate.transform import KlineConfig, KlineTransform
from streamer_aggregate.verify import KlineVerify, VerifyConfig


@hookimpl
def streamer_register_transforms(register: RegisterType) -> None:
    register("klines.from_trades", KlineConfig, KlineTransform)
    register("klines.passthrough", PassthroughConfig, KlinePassthrough)
    register("klines.verify", VerifyConfig, KlineVerify)
    register("books.top", BooksTopConfig, BooksTop)
