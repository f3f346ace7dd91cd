"""Reading a streamer.toml from a plugin's own command (``streamer db migrate -c
streamer.toml``): the same parsing, environment overrides and checks as ``streamer check``.

    try:
        pipeline = load_pipeline("streamer.toml")
    except ConfigError as exc:
        print("\\n".join(exc.errors))   # one line per problem, with file and dotted path
    for node in pipeline.sinks:        # NodeConfig: .name .type .options (the config class)
        ...
"""

from __future__ import annotations

import os

from streamer._config import ConfigError, NodeConfig, PipelineConfig, load_config_file
from streamer._plugins import load_plugin_manager

__all__ = ["ConfigError", "NodeConfig", "PipelineConfig", "load_pipeline"]


def load_pipeline(path: str | os.PathLike[str]) -> PipelineConfig:
    """The pipeline of ``path``, built with every installed plugin; raises
    :class:`ConfigError` listing every problem."""
    return load_config_file(path, load_plugin_manager())
