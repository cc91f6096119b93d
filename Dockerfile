# wasmops-edge: a static (musl) binary on an empty image.
#   docker build -t wasmops-edge .     (or podman build)
#   docker run -p 7878:7878 -v wasmops-data:/data -e WASMOPS_TOKEN=... wasmops-edge
# Reproducible inputs: the toolchain image is pinned by version, dependencies by Cargo.lock
# (--locked), and the build writes no timestamps into the binary.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# musl-gcc compiles the bundled SQLite; the Rust code links statically.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_STRIP=true
RUN cargo build --release --locked -p wasmops-edge --target x86_64-unknown-linux-musl \
 && install -D -m 755 target/x86_64-unknown-linux-musl/release/wasmops-edge /out/wasmops-edge \
 && install -d -m 700 /out/data

FROM scratch
COPY --from=build /out/wasmops-edge /wasmops-edge
COPY --from=build --chown=65534:65534 /out/data /data
USER 65534:65534
ENV WASMOPS_DATA_DIR=/data \
    WASMOPS_LISTEN=0.0.0.0:7878
VOLUME /data
EXPOSE 7878
ENTRYPOINT ["/wasmops-edge"]
CMD ["serve"]
