# stock-host and the default component on an empty base: no shell, no package manager, numeric
# non-root user. Two ways to build it:
#
#   make image                      offline (no registry): the release binary this machine already
#                                   built, with the shared libraries `ldd` lists, staged in
#                                   target/image-root by scripts/stage-image.sh, then
#                                   `docker build --target runtime .`
#
#   docker build --target from-source -t stock-host:dev .
#                                   with a registry: everything built inside Docker; pick the
#                                   builder with --build-arg BUILDER=... (Rust 1.95, Debian 12 glibc)
#
# The runtime stages come first so that builders without BuildKit (which build every stage up to the
# target) never need the builder image for `make image`.

# What both runtime stages share: no shell, no package manager, a numeric non-root user.
FROM scratch AS runtime-base
ARG VERSION=dev
LABEL org.opencontainers.image.title="stock-host" \
      org.opencontainers.image.description="Stock closing prices: a WebAssembly component served by a wasmtime host" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/stock-service/stock-host" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV COMPONENT=/component/stock_component.wasm \
    BIND=0.0.0.0 \
    LOG_FORMAT=json
EXPOSE 8080 9090
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/stock-host"]
CMD ["serve"]

# `make image`: the files scripts/stage-image.sh staged from this machine's release build.
FROM runtime-base AS runtime
COPY target/image-root/ /

# --- everything built inside Docker (needs a registry for the builder image) ---
ARG BUILDER=docker.io/library/rust:1.95-bookworm
FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
# scripts/docs-assets.sh needs python3 with pip (the /docs bundle comes from a pinned PyPI wheel).
RUN scripts/docs-assets.sh \
 && rustup target add wasm32-wasip2 \
 && cargo build --locked --release --target wasm32-wasip2 -p stock-component \
 && cargo build --locked --release -p stock-host \
 && scripts/stage-image.sh

FROM runtime-base AS from-source
COPY --from=build /src/target/image-root/ /
