raise ImportError("streamer_broken needs a library that is not installed")
