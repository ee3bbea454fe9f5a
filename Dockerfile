FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/salesbatch /usr/local/bin/salesbatch
COPY report-templates /app/report-templates
# not root: the service reads inboxes and writes reports, nothing more
RUN useradd --system --home-dir /app salesbatch && mkdir -p /app/data /app/out && chown salesbatch /app/data /app/out
USER salesbatch
WORKDIR /app
ENTRYPOINT ["salesbatch"]
CMD ["serve"]
