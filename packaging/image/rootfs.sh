#!/usr/bin/env bash
# Assembles the container image's root filesystem from a built binary, without an image
# registry: the binary, the shared libraries it links (as ldd resolves them, and the ELF
# loader), the CA certificates (rustls reads the system's), a passwd/group with root and
# the `strata` user (uid and gid configurable: the database's, for a sidecar), a state
# directory that user owns, and /tmp. The same layout as the Dockerfile's runtime stage.
# Usage: packaging/image/rootfs.sh BINARY OUTDIR [UID [GID]]
set -euo pipefail
bin=${1:?usage: rootfs.sh BINARY OUTDIR [UID [GID]]}
out=${2:?usage: rootfs.sh BINARY OUTDIR [UID [GID]]}
uid=${3:-10001}
gid=${4:-$uid}
case "$uid$gid" in *[!0-9]*) echo "rootfs.sh: uid and gid must be numbers" >&2; exit 2 ;; esac

rm -rf "$out"
mkdir -p "$out"
chmod 0755 "$out" # the image's / (mktemp and umask may make it 0700)
mkdir -p "$out"/{usr/bin,etc/strata,etc/ssl/certs,tmp,var/lib/strata}
install -m 0755 "$bin" "$out/usr/bin/strata"

# Every library ldd names (absolute paths: "libc.so.6 => /lib/.../libc.so.6 (0x...)" and
# the loader "/lib64/ld-linux-x86-64.so.2 (0x...)"), copied to the same path.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || { echo "rootfs.sh: ldd found no libraries in $bin (a static build needs none; this script expects a dynamic one)" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done

[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "rootfs.sh: no /etc/ssl/certs/ca-certificates.crt (install ca-certificates)" >&2; exit 1; }
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"

cat >"$out/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
strata:x:$uid:$gid:strata:/var/lib/strata:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$out/etc/group" <<GROUP
root:x:0:
strata:x:$gid:
nogroup:x:65534:
GROUP
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
chmod 1777 "$out/tmp"
chown "$uid:$gid" "$out/var/lib/strata"
chmod 0700 "$out/var/lib/strata"
echo "rootfs.sh: $(du -sh "$out" | cut -f1) in $out (uid $uid, gid $gid)" >&2
