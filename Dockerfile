# syntax=docker/dockerfile:1
# The strata container image: `docker build -t strata .` (or podman/buildah bud).
# Stage 1 builds the stripped binary (profile dist); stage 2 is a small runtime image
# (distroless: glibc, libgcc, CA certificates; no shell, no package manager) running as a
# non-root user whose uid/gid are build arguments: for a sidecar, build with the
# database's (`--build-arg STRATA_UID=999 --build-arg STRATA_GID=999` for the postgres
# image) or run with `--user UID:GID` and a volume for /var/lib/strata.
# Without an image registry, packaging/image/build-local.sh builds the same image from
# the host's binary (docs/install.md).

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# aws-lc-sys (rustls' crypto) builds with cmake, perl and a C compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl make gcc g++ pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --profile dist -p strata \
 && install -D -m 0755 target/dist/strata /out/usr/bin/strata
ARG STRATA_UID=10001
ARG STRATA_GID=${STRATA_UID}
RUN mkdir -p /out/etc /out/var/lib/strata /out/etc/strata \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nstrata:x:%s:%s:strata:/var/lib/strata:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' \
      "$STRATA_UID" "$STRATA_GID" >/out/etc/passwd \
 && printf 'root:x:0:\nstrata:x:%s:\nnogroup:x:65534:\n' "$STRATA_GID" >/out/etc/group \
 && chown "$STRATA_UID:$STRATA_GID" /out/var/lib/strata && chmod 0700 /out/var/lib/strata

# PostgreSQL with strata beside it, for `archive_command = 'strata wal-push %p'` (the
# compose example and the Kubernetes StatefulSet use it): `--target postgres`.
FROM docker.io/library/postgres:15-bookworm AS postgres
COPY --from=build /out/usr/bin/strata /usr/local/bin/strata
# wal-push's state directory (a volume in compose): the postgres user's, 0700, so a volume
# mounted there starts with that owner.
RUN install -d -o postgres -g postgres -m 0700 /var/lib/strata

# The default target (last stage): the strata image.
FROM gcr.io/distroless/cc-debian12 AS runtime
ARG STRATA_UID=10001
ARG STRATA_GID=${STRATA_UID}
COPY --from=build /out/ /
# The working directory stays /: any uid can start (the state directory is 0700, its owner's).
ENV STRATA_STATE_DIR=/var/lib/strata HOME=/var/lib/strata
VOLUME ["/var/lib/strata"]
USER ${STRATA_UID}:${STRATA_GID}
EXPOSE 7370
ENTRYPOINT ["/usr/bin/strata"]
CMD ["--help"]
