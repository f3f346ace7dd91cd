"""The ``storage`` sink: the older Bybit streamer's Redis key layout (tickers, prices, last
closed klines, optional kline history), written through streamer-redis's buffered writer."""
