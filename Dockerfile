# syntax=docker/dockerfile:1
#
# allocate: the server (`allocate-http`, the default target) and the reference agent
# (`--target agent`). docs/packaging.md explains how to run them.
#
#   docker build -t allocate .
#   docker build -t allocate-agent --target agent .
#
# The server refuses a non-loopback address while no tokens are configured, so this image
# does NOT start open: give it a tokens file (-e ALLOCATE_TOKENS_FILE=... and a mounted file),
# or pass `--allow-open` (or -e ALLOCATE_ALLOW_OPEN=true) to accept that anyone who can reach
# the published port may allocate, and publish it on a trusted address only
# (`-p 127.0.0.1:8080:8080`).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build: both binaries, with the committed Cargo.lock ---------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and the build between builds; the binaries are copied out
# of the cached target directory because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p allocate-http -p allocate-agent \
    && install -D -m 0755 -t /out target/release/allocate-http target/release/allocate-agent

# ---- runtime: what the server and the agent share ------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
LABEL org.opencontainers.image.title="allocate" \
      org.opencontainers.image.description="Hands out dedicated lab hardware: the allocate server and agent" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/allocate-lab/allocate"
# A fixed, unprivileged uid/gid (numeric below, so that runAsNonRoot can check it);
# -l: no huge sparse lastlog/faillog entries for a high uid.
RUN groupadd --system --gid 10001 allocate \
    && useradd --system -l --uid 10001 --gid allocate --home-dir /var/lib/allocate \
       --shell /usr/sbin/nologin allocate \
    && install -d -o allocate -g allocate -m 0750 /var/lib/allocate
COPY --from=builder /out/allocate-http /out/allocate-agent /usr/local/bin/
# State lives here: the server's journal and snapshots (--data-dir), the agent's id (--state-dir).
VOLUME ["/var/lib/allocate"]
WORKDIR /var/lib/allocate
USER 10001:10001

# ---- agent: `docker build --target agent` ---------------------------------------------------
# Keeps its id in the volume: containers have no /etc/machine-id to derive one from.
FROM runtime AS agent
ENV ALLOCATE_AGENT_STATE_DIR=/var/lib/allocate/agent
ENTRYPOINT ["allocate-agent"]

# ---- server: the default target -------------------------------------------------------------
FROM runtime AS server
ENV ALLOCATE_LISTEN=0.0.0.0:8080 \
    ALLOCATE_DATA_DIR=/var/lib/allocate/data
EXPOSE 8080
# GET /healthz over bash's /dev/tcp: no curl, so no extra package (and no version to pin).
# The port is the one in ALLOCATE_LISTEN; a --listen flag does not change it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${ALLOCATE_LISTEN##*:}\" && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 4 _ code _ <&3 && [ \"$code\" = 200 ]"]
ENTRYPOINT ["allocate-http"]
