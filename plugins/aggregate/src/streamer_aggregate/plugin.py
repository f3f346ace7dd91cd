"""Registers the ``klines.from_trades``, ``klines.passthrough``, ``klines.verify`` and
``books.top`` transforms.

Registering imports the options only (:mod:`streamer_aggregate.config`); each factory imports
its transform (the aggregator and its backfill, the verifier, with trio) when the pipeline
builds one, so loading the plugins and ``streamer check`` stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterType, hookimpl
from streamer_aggregate.config import (
    BooksTopConfig,
    KlineConfig,
    PassthroughConfig,
    VerifyConfig,
)

if TYPE_CHECKING:
    from streamer_aggregate.books_top import BooksTop
    from streamer_aggregate.passthrough import KlinePassthrough
    from streamer_aggregate.transform import KlineTransform
    from streamer_aggregate.verify import KlineVerify


def make_from_trades(config: KlineConfig, context: Context) -> KlineTransform:
    from streamer_aggregate.transform import KlineTransform

    return KlineTransform(config, context)


def make_passthrough(config: PassthroughConfig, context: Context) -> KlinePassthrough:
    from streamer_aggregate.passthrough import KlinePassthrough

    return KlinePassthrough(config, context)


def make_verify(config: VerifyConfig, context: Context) -> KlineVerify:
    from streamer_aggregate.verify import KlineVerify

    return KlineVerify(config, context)


def make_books_top(config: BooksTopConfig, context: Context) -> BooksTop:
    from streamer_aggregate.books_top import BooksTop

    return BooksTop(config, context)


@hookimpl
def streamer_register_transforms(register: RegisterType) -> None:
    register("klines.from_trades", KlineConfig, make_from_trades)
    register("klines.passthrough", PassthroughConfig, make_passthrough)
    register("klines.verify", VerifyConfig, make_verify)
    register("books.top", BooksTopConfig, make_books_top)
