FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/salesbatch /usr/local/bin/salesbatch
COPY report-templates /app/report-templates
WORKDIR /app
ENTRYPOINT ["salesbatch"]
CMD ["serve"]
