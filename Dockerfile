# streamer in a container: the core and every bundled plugin, installed from this repository
# by scripts/install (the command scripts/setup uses too), run as an unprivileged user.
#   docker build -t streamer .
#   docker run --rm -e STREAMER_WSS_AUTH_KEY=... -p 127.0.0.1:9500:9500 streamer  # deploy/image.toml
#   docker run --rm -v $PWD/my.toml:/etc/streamer/streamer.toml:ro streamer
#     (my.toml needs [streamer] metrics = "0.0.0.0:9464": the HEALTHCHECK asks /healthz there)
#   docker run --rm -v $PWD/.env:/tmp/.env:ro streamer migrate-env /tmp/.env
# Relative paths of a config (a files sink's directory, capture_dir) are under the working
# directory /var/lib/streamer, a volume owned by the streamer user.
# docs/operations.md: what was tested without a Docker engine and what was not.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY core ./core
COPY plugins ./plugins
COPY scripts/install ./scripts/install
RUN ./scripts/install && rm -rf /src

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin streamer \
    && install -d -o streamer -g streamer -m 0750 /var/lib/streamer
COPY deploy/image.toml /etc/streamer/streamer.toml

# WORKDIR would create the directory owned by root: it exists already, owned by streamer.
WORKDIR /var/lib/streamer
VOLUME ["/var/lib/streamer"]
USER streamer

# 9464: /metrics, /healthz, /readyz ([streamer] metrics); 9500: the websocket sink.
EXPOSE 9464 9500
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

ENTRYPOINT ["streamer"]
CMD ["run", "-c", "/etc/streamer/streamer.toml"]
