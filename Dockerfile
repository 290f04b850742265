# Build stage: compile the single upi-switch binary (migrations are embedded in it).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin upi-switch

# Run stage: a small image with just the binary.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/upi-switch /usr/local/bin/upi-switch
USER nobody
ENTRYPOINT ["upi-switch"]
CMD ["serve"]
