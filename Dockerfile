# One image for every telar service: `telar serve NAME` per container (deploy/k8s), or
# `telar up` for the whole system in one. Built in two stages; the runtime image holds only the
# binary, CA certificates and an unprivileged user (uid 10001, as the manifests expect).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p telar

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin telar \
 && mkdir -p /var/lib/telar && chown 10001 /var/lib/telar
COPY --from=build /src/target/release/telar /usr/local/bin/telar
USER 10001
WORKDIR /var/lib/telar
EXPOSE 8000 8008 8010 8012 8019
ENTRYPOINT ["telar"]
CMD ["up"]
