"""Kline transforms: ``klines.from_trades`` (aggregate trades) and ``klines.passthrough``."""
