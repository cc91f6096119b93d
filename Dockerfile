# wasmops-edge on an empty image, built with no network and no base image to pull.
#
# Default path: `cargo xtask container` builds the binary on the host (release profile), stages
# a context holding it, exactly the shared libraries `ldd` says it loads (glibc's libc, libm,
# libgcc_s and the dynamic loader, at the paths the binary asks for) and an empty data dir,
# then runs `podman build -f Dockerfile <staged context>` and smoke-tests the image
# (health, upload, activate, predict). By hand, the same:
#   cargo xtask container            # builds localhost/wasmops-edge:latest and checks it
#   podman run -p 7878:7878 -v wasmops-data:/data -e WASMOPS_TOKEN=... localhost/wasmops-edge
#
# The staged context's layout (what the COPY lines below take):
#   rootfs/wasmops-edge, rootfs/lib*/..., data/ (empty)
#
# Fully static variant, where a Rust toolchain image can be pulled: build the binary for musl
# in a first stage and copy only it (no libraries needed), e.g.
#   FROM rust:1.95-bookworm AS build
#   RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
#    && rustup target add x86_64-unknown-linux-musl
#   WORKDIR /src
#   COPY . .
#   ENV CC_x86_64_unknown_linux_musl=musl-gcc   # musl-gcc compiles the bundled SQLite
#   RUN cargo build --release --locked -p wasmops-edge --target x86_64-unknown-linux-musl \
#    && mkdir -p /ctx/rootfs /ctx/data \
#    && cp target/x86_64-unknown-linux-musl/release/wasmops-edge /ctx/rootfs/
# and replace the COPY lines below with `COPY --from=build /ctx/rootfs/ /` and
# `COPY --from=build --chown=65534:65534 /ctx/data /data`. (On a host with the musl target,
# `rustup target add x86_64-unknown-linux-musl` plus Debian's musl-tools, the same binary can
# be staged as rootfs/wasmops-edge alone.)

FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /data/
USER 65534:65534
ENV WASMOPS_DATA_DIR=/data \
    WASMOPS_LISTEN=0.0.0.0:7878
VOLUME /data
EXPOSE 7878
ENTRYPOINT ["/wasmops-edge"]
CMD ["serve"]
