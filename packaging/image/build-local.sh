#!/usr/bin/env bash
# Builds the container image here, without any image registry: the root filesystem of
# rootfs.sh packed as an OCI image by buildah from `scratch`, with the Dockerfile's
# entrypoint, user and environment. Writes the image to buildah's local store as
# NAME (default localhost/strata:dev) and to OUT (an OCI archive) when given.
# Usage: packaging/image/build-local.sh BINARY [NAME [OUT.tar [UID [GID]]]]
# Storage driver vfs: works where overlay mounts do not (inside containers, CI sandboxes).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${1:?usage: build-local.sh BINARY [NAME [OUT.tar [UID [GID]]]]}
name=${2:-localhost/strata:dev}
archive=${3:-}
uid=${4:-10001}
gid=${5:-$uid}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
command -v buildah >/dev/null || { echo "build-local.sh: buildah is not installed (apt-get install buildah)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${ctr:-}" ] && buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
"$here/rootfs.sh" "$bin" "$work/rootfs" "$uid" "$gid"

ctr=$(buildah from scratch)
# `buildah add` of a tar keeps owners and modes (the state directory is the user's).
tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
buildah config \
  --entrypoint '["/usr/bin/strata"]' --cmd '["--help"]' \
  --user "$uid:$gid" \
  --env STRATA_STATE_DIR=/var/lib/strata --env HOME=/var/lib/strata \
  --port 7370/tcp --volume /var/lib/strata \
  --label org.opencontainers.image.title=strata \
  --label org.opencontainers.image.version="$("$bin" --version | awk '{print $2}')" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$name" >/dev/null
ctr=
if [ -n "$archive" ]; then
  rm -f "$archive"
  buildah push --quiet "$name" "oci-archive:$archive:$name" >/dev/null
fi
echo "build-local.sh: built $name${archive:+ (and $archive)}" >&2
