#!/usr/bin/env bash
# The packaging checks, as CI runs them (scripts/test.sh calls this at its end): builds the
# stripped binary once (cargo profile `dist`) and from it the Debian package and the
# container image, then proves each works the way an operator uses it:
#   - the package installs with dpkg -i; the installed strata backs up and restores a 0700
#     tree owned by another user, with owners and modes, under the server unit's capability
#     bounding set; the units pass `systemd-analyze verify` and stay under an exposure
#     ceiling in `systemd-analyze security --offline=true`; dpkg -r leaves only the
#     conffile, dpkg --purge leaves nothing;
#   - the image (built here without any image registry, by buildah from scratch) runs, as
#     its default non-root user and as another uid, a backup and a restore of a directory;
#   - the Kubernetes manifests validate against the Kubernetes schemas (kubernetes-validate,
#     strict), the ServiceMonitor against prometheus-operator's CRD schema, and the compose
#     example against the Compose specification's schema.
# Every check fails the script; nothing is skipped. Needs root (dpkg -i, chown), and
# installs what it lacks: buildah (apt); cargo-deb (crates.io), kubernetes-validate and
# dockerfile (PyPI) and @kubernetes-models/prometheus-operator (npm) into
# ~/.cache/strata-packaging/tools ($STRATA_PACKAGING_CACHE overrides the cache).
# Prints the sizes and times that docs/install.md reports.
#
# `--prepare` only installs the tools and builds the binary, then exits: what needs the
# network and the CPU, and nothing installed on the machine. `--tools` and `--build` do
# one of the two each, `--checks` only the checks (with the tools and binary in place).
#
# `--dev-build` packages the binary of the `dev` profile (built without the test hooks,
# in the work tree's target directory, stripped by `strip`) instead of the `dist` build:
# the same code and features, unoptimized. scripts/test.sh uses it, so that a fresh
# machine compiles every crate for the tests and once more without test hooks, not a
# third time with optimizations; run without it, this script checks what ships.
set -euo pipefail
do_tools=1
do_build=1
do_checks=1
dev_build=0
for arg in "$@"; do
  case "$arg" in
    --prepare) do_checks=0 ;;
    --tools) do_build=0 do_checks=0 ;;
    --build) do_tools=0 do_checks=0 ;;
    --checks) do_tools=0 do_build=0 ;;
    --dev-build) dev_build=1 ;;
    *) echo "usage: $0 [--prepare | --tools | --build | --checks] [--dev-build]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# Kept across runs and clones on one machine (CI runs each submission in a fresh clone):
# the tools, and the dist build's target directory, so a later run recompiles only the
# workspace's crates, not its dependencies. Both are caches: delete them any time.
cache=${STRATA_PACKAGING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-packaging}
tools=$cache/tools
if [ "$dev_build" = 1 ]; then
  # cargo-deb finds the binary under this target directory's `debug/` (profile dev).
  export CARGO_TARGET_DIR=$repo/target/packaging-dev
  profile=dev
  bin=$CARGO_TARGET_DIR/debug/strata
else
  export CARGO_TARGET_DIR=$cache/target
  profile=dist
  bin=$CARGO_TARGET_DIR/dist/strata
fi
work=$repo/target/packaging-check
started=$(date +%s)

fail() { echo "packaging-check: FAIL: $*" >&2; exit 1; }
# A command that fails outside a check of its own (set -e) says where, not a silent exit 1.
trap 'echo "packaging-check: FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
# On any exit: the working container, and the package if this run installed it and has not
# purged it yet (a failed run leaves the machine as it found it).
installed=0
ctr=
server_pid=
descendants() { local c; for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done; }
current_step=
cleanup() {
  local status=$?
  [ "$status" = 0 ] || echo "packaging-check: exit $status during: $current_step" >&2
  # The image's server, if a check failed while it ran (buildah run and strata under it).
  if [ -n "$server_pid" ]; then
    for p in $(descendants "$server_pid") "$server_pid"; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  [ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true
  if [ "$installed" = 1 ]; then dpkg --purge strata >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
step() {
  local now
  now=$(date +%s)
  current_step=$*
  echo "==> [packaging +$((now - started))s] $*"
}
[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i, restoring owners)"

CARGO_DEB_VERSION=3.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_MODELS_VERSION=6.0.0
DOCKERFILE_PARSER_VERSION=3.4.0
# Ceilings of `systemd-analyze security` (0 safest .. 10 unsafe): today 2.3 and 1.2;
# a unit that loses its sandbox fails here.
SERVER_EXPOSURE_MAX=2.5
WORKER_EXPOSURE_MAX=1.5
IMAGE_UID=10001
SIDECAR_UID=999
export STORAGE_DRIVER=vfs # buildah: overlay mounts need more than CI sandboxes allow

if [ "$do_tools" = 1 ]; then
  step "tools"
  missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v dpkg-deb >/dev/null || missing+=(dpkg)
  command -v strip >/dev/null || missing+=(binutils)
  command -v setpriv >/dev/null || missing+=(util-linux)
  command -v node >/dev/null || missing+=(nodejs)
  command -v curl >/dev/null || missing+=(curl)
  command -v npm >/dev/null || missing+=(npm)
  python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
  [ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  mkdir -p "$tools"
  if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION into $tools" >&2
    env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$tools" cargo-deb --version "$CARGO_DEB_VERSION" >&2
  fi
  [ -x "$tools/venv/bin/python" ] || python3 -m venv "$tools/venv"
  if ! "$tools/venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
    "$tools/venv/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" jsonschema pyyaml >&2
  fi
  if ! "$tools/venv/bin/python" -c "import dockerfile" 2>/dev/null; then
    "$tools/venv/bin/pip" install --quiet "dockerfile==$DOCKERFILE_PARSER_VERSION" >&2
  fi
  if [ ! -f "$tools/node_modules/@kubernetes-models/prometheus-operator/package.json" ]; then
    npm install --silent --no-audit --no-fund --prefix "$tools" \
      "@kubernetes-models/prometheus-operator@$PROMETHEUS_MODELS_VERSION" >&2
  fi
fi

if [ "$do_build" = 1 ] && [ "$dev_build" = 1 ]; then
  step "cargo build -p strata (profile dev, no test hooks), stripped into $bin"
  # In the work tree's own target directory, whose dependencies the tests' build shares.
  # (A build of the tests links target/debug/strata with the test hooks: this one goes
  # first, its binary copied out before that one replaces it.)
  CARGO_TARGET_DIR=$repo/target cargo build --quiet --locked -p strata
  mkdir -p "$(dirname "$bin")"
  strip -o "$bin" "$repo/target/debug/strata"
elif [ "$do_build" = 1 ]; then
  step "cargo build --profile dist -p strata (the stripped binary; built once, reused below)"
  cargo build --quiet --locked --profile dist -p strata
fi
if [ "$do_checks" = 0 ]; then
  echo "==> packaging: tools and build ready in $(($(date +%s) - started))s"
  exit 0
fi
[ -x "$bin" ] || fail "$bin is not built (run with --build first, or without options)"
version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || fail "$bin --version printed no version"
# Stripped: no symbol table, no debug sections (what profile dist's strip/debug promise,
# or `strip` did for --dev-build).
python3 - "$bin" <<'PY' || fail "$bin is not stripped"
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 2, "not a 64-bit ELF file"
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
def section(i):
    return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
strtab_off = section(shstrndx)[4]
names = []
for i in range(shnum):
    name_off = section(i)[0]
    end = data.index(b"\0", strtab_off + name_off)
    names.append(data[strtab_off + name_off:end].decode())
# .debug_gdb_scripts is a loaded section (names of gdb pretty-printers), kept by strip.
bad = [n for n in names if n == ".symtab"
       or (n.startswith(".debug") and n != ".debug_gdb_scripts")]
if bad:
    sys.exit(f"sections {bad} present")
PY
bin_size=$(stat -c %s "$bin")

step "completions and man pages from the binary"
packaging/build-assets.sh "$bin" "$repo/target/dist-assets"
bash -n "$repo/target/dist-assets/completions/strata.bash" || fail "bash rejects the completion script"

step "the Debian package (cargo-deb)"
rm -rf "$work" && mkdir -p "$work"
"$tools/bin/cargo-deb" --quiet -p strata --profile "$profile" --no-build --no-strip \
  --output "$work/strata.deb" >/dev/null
deb=$work/strata.deb
deb_size=$(stat -c %s "$deb")
dpkg-deb -c "$deb" >"$work/contents"
grep -q ' ./usr/bin/strata$' "$work/contents" || fail "the package has no /usr/bin/strata"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/strata | cmp -s - "$bin" \
  || fail "the package's /usr/bin/strata is not the binary just built ($bin)"
grep -Eq '^-rw-r----- (root/root|0/0) .* \./etc/strata/strata\.toml$' "$work/contents" \
  || fail "/etc/strata/strata.toml is not root-owned 0640 in the package: $(grep strata.toml "$work/contents")"
for f in lib/systemd/system/strata.service lib/systemd/system/strata-pgq-ticker.service \
  'lib/systemd/system/strata-londiste@.service' lib/systemd/system/strata-wal-archiver.service usr/share/bash-completion/completions/strata \
  usr/share/zsh/vendor-completions/_strata usr/share/fish/vendor_completions.d/strata.fish \
  usr/share/man/man1/strata.1.gz usr/share/doc/strata/install.md; do
  grep -q " \./$f\$" "$work/contents" || fail "the package lacks /$f"
done
dpkg-deb -e "$deb" "$work/control"
[ "$(cat "$work/control/conffiles")" = /etc/strata/strata.toml ] \
  || fail "conffiles is not exactly /etc/strata/strata.toml: $(cat "$work/control/conffiles")"

step "dpkg -i"
# Never touch an installation this check did not make (it purges its own, even on failure).
dpkg -s strata >/dev/null 2>&1 \
  && fail "a strata package is installed on this machine: remove it first (this check installs and purges its own)"
[ ! -e /etc/strata ] || fail "/etc/strata exists before the install: not ours to overwrite or purge"
installed=1
dpkg -i "$deb" >/dev/null
dpkg -L strata | sort >"$work/installed-files"
[ "$(/usr/bin/strata --version)" = "strata $version" ] || fail "installed strata --version: $(/usr/bin/strata --version)"
[ "$(stat -c '%U:%G %a' /etc/strata/strata.toml)" = "root:root 640" ] \
  || fail "/etc/strata/strata.toml is $(stat -c '%U:%G %a' /etc/strata/strata.toml), not root:root 640"
/usr/bin/strata --config /etc/strata/strata.toml config show >/dev/null \
  || fail "the shipped configuration skeleton does not parse"
# Every setting it shows, uncommented as it stands, is a valid configuration too (a key
# placed after a [table] header would land in that table).
python3 - /etc/strata/strata.toml >"$work/skeleton-uncommented.toml" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    body = line.rstrip("\n")[2:] if line.startswith("# ") else None
    if body is not None and (body.startswith("[") or re.match(r"^[A-Za-z0-9_]+ = ", body)):
        print(body)
PY
grep -q '^\[\[nodes\]\]' "$work/skeleton-uncommented.toml" || fail "the skeleton's examples were not found"
/usr/bin/strata --config "$work/skeleton-uncommented.toml" config show >/dev/null \
  || fail "the skeleton's settings, uncommented, are not a valid configuration: $(cat "$work/skeleton-uncommented.toml")"
zcat /usr/share/man/man1/strata.1.gz | grep -q '^\.TH' || fail "strata.1 is not a man page"
bash -c 'source /usr/share/bash-completion/completions/strata && complete -p strata' >/dev/null \
  || fail "the installed bash completion does not register for strata"

step "backup and restore of a 0700 tree owned by another user, with the installed binary"
# Root like the server unit, limited to its capability bounding set (setpriv drops the rest
# exactly as CapabilityBoundingSet= does), with no_new_privs.
caps=-all,+chown,+fowner,+dac_override,+dac_read_search,+fsetid
unit_caps=$(sed -n 's/^CapabilityBoundingSet=//p' packaging/deb/strata.service | tr 'A-Z ' 'a-z\n' \
  | sed 's/^cap_/+/' | sort | paste -sd,)
[ "$unit_caps" = "$(echo "${caps#-all,}" | tr , '\n' | sort | paste -sd,)" ] \
  || fail "the test's capabilities ($caps) differ from the unit's ($unit_caps)"
as_unit() { setpriv --bounding-set="$caps" --inh-caps=-all --no-new-privs -- "$@"; }
owner=54321
tree=$work/tree
mkdir -p "$tree/src/sub/deeper"
printf 'secret\n' >"$tree/src/a"
head -c 300000 /dev/urandom >"$tree/src/sub/b"
printf 'x\n' >"$tree/src/sub/deeper/c"
ln -s a "$tree/src/link"
chmod 0600 "$tree/src/a" "$tree/src/sub/b"
chmod 2750 "$tree/src/sub/deeper" # setgid directory: needs CAP_FSETID to come back as is
chmod 0700 "$tree/src" "$tree/src/sub"
chown -hR "$owner:$owner" "$tree/src"
export STRATA_PASSWORD=packaging-check-password
repo_dir=$tree/repo
as_unit /usr/bin/strata --repo "$repo_dir" --state-dir "$tree/state" --quiet init
as_unit /usr/bin/strata --repo "$repo_dir" --state-dir "$tree/state" --quiet backup --node-name pkg "$tree/src"
as_unit /usr/bin/strata --repo "$repo_dir" --state-dir "$tree/state" --quiet restore latest --to "$tree/out"
diff -r --no-dereference "$tree/src" "$tree/out" >/dev/null || fail "the restored tree differs from the source"
listing() { (cd "$1" && find . -printf '%p %u:%g %m %y\n' | sort); }
listing "$tree/src" >"$work/src.list"
listing "$tree/out" >"$work/out.list"
diff "$work/src.list" "$work/out.list" || fail "owners or modes differ after the restore (above)"
grep -q "^\. $owner:$owner 700 d$" "$work/out.list" || fail "the restored root is not 0700 and the other user's"
# The test-only STRATA_TEST_* switches do nothing in the package's build (cargo feature
# test-hooks, test builds only): a host clock an hour behind, as one asks, is not taken up.
as_unit env STRATA_TEST_CLOCK_OFFSET_SECS=-3600 /usr/bin/strata --repo "$repo_dir" --state-dir "$tree/state" \
  --quiet backup --node-name pkg "$tree/src"
if as_unit /usr/bin/strata --repo "$repo_dir" --state-dir "$tree/state" show latest | grep -q "host's clock said"; then
  fail "the package's binary honours a test-only switch (STRATA_TEST_CLOCK_OFFSET_SECS)"
fi
unset STRATA_PASSWORD

step "systemd units: systemd-analyze verify and security --offline=true"
# Started when they serve (READY=1), restarted when they stall (the watchdog).
for unit in packaging/deb/*.service; do
  grep -qx 'Type=notify' "$unit" && grep -q '^WatchdogSec=' "$unit" \
    || fail "$unit is not Type=notify with a WatchdogSec="
done
units=(/lib/systemd/system/strata.service /lib/systemd/system/strata-pgq-ticker.service
  '/lib/systemd/system/strata-londiste@.service' /lib/systemd/system/strata-wal-archiver.service)
for unit in "${units[@]}"; do
  [ -f "$unit" ] || fail "$unit is not installed"
  out=$(timeout 120 systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
  # verify also warns without failing: any line about our units counts.
  if grep -i strata <<<"$out"; then fail "systemd-analyze verify $unit warned (above)"; fi
done
# Each unit's ExecStart, as systemd would run it (%d: a credentials directory holding the
# skeleton and a Londiste ini; %i: an instance name; the ticker's port: any free one), must
# be a command line this strata accepts: the ticker and the worker run until stopped (no
# database here: they retry), the server refuses the empty skeleton with its own message.
cred=$work/credentials
mkdir -p "$cred"
cp /etc/strata/strata.toml "$cred/strata.toml"
printf '[londiste3]\njob_name = n1\ndb = host=/nonexistent dbname=none\nqueue_name = q\n' >"$cred/node.ini"
exec_start() { # UNIT: its ExecStart with specifiers filled in
  sed -n 's/^ExecStart=//p' "$1" | sed -e "s|%d|$cred|g" -e 's|%i|n1|g' -e 's|127\.0\.0\.1:9187|127.0.0.1:0|'
}
for unit in /lib/systemd/system/strata-pgq-ticker.service '/lib/systemd/system/strata-londiste@.service'; do
  cmd=$(exec_start "$unit")
  rc=0
  timeout 3 $cmd >"$work/unit.log" 2>&1 || rc=$?
  [ "$rc" = 124 ] || fail "$unit: \`$cmd\` exited $rc instead of running: $(head -5 "$work/unit.log")"
done
cmd=$(exec_start /lib/systemd/system/strata.service)
rc=0
timeout 10 $cmd >"$work/unit.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "nothing to serve" "$work/unit.log" \
  || fail "strata.service: \`$cmd\` on the skeleton exited $rc: $(head -5 "$work/unit.log")"

# The WAL archiver's ExecStart, on a real repository and configuration (the skeleton has no
# storage), as postgres would run it: it listens, `wal-push` hands it a segment through the
# socket in its state directory, and SIGTERM ends it (exit 0).
walcred=$work/wal-credentials
walstate=$work/wal-state
mkdir -p "$walcred" "$walstate/pg_wal/archive_status"
printf 'plugin = "postgres"\n[storages.local]\npath = "%s"\n[[nodes]]\nname = "db"\n[nodes.postgres]\ndata_dir = "%s"\n' \
  "$work/wal-repo" "$walstate/pg" >"$walcred/strata.toml"
STRATA_PASSWORD=wal-check /usr/bin/strata --config "$walcred/strata.toml" --state-dir "$walstate" --quiet init
cmd=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/strata-wal-archiver.service \
  | sed -e "s|%d|$walcred|g" -e "s|/var/lib/strata-wal|$walstate|g")
STRATA_PASSWORD=wal-check $cmd >"$work/unit.log" 2>&1 &
walpid=$!
for _ in $(seq 1 100); do [ -S "$walstate/wal-archiver.sock" ] && break; sleep 0.1; done
[ -S "$walstate/wal-archiver.sock" ] || fail "strata-wal-archiver.service: \`$cmd\` did not listen: $(head -5 "$work/unit.log")"
head -c 16384 /dev/urandom >"$walstate/pg_wal/000000010000000000000001"
touch "$walstate/pg_wal/archive_status/000000010000000000000001.ready"
STRATA_PASSWORD=wal-check /usr/bin/strata --config "$walcred/strata.toml" --state-dir "$walstate" --quiet \
  wal-push "$walstate/pg_wal/000000010000000000000001" || fail "wal-push through the unit's archiver"
STRATA_PASSWORD=wal-check /usr/bin/strata --config "$walcred/strata.toml" --state-dir "$walstate" --json wal status \
  | grep -q '"archived_files": *1' || fail "the unit's archiver did not archive the segment"
kill -TERM "$walpid"
wait "$walpid" || fail "strata-wal-archiver.service: SIGTERM ended it with $?: $(tail -5 "$work/unit.log")"

exposure() {
  timeout 120 systemd-analyze security --offline=true --no-pager "$1" 2>/dev/null \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
server_exposure=$(exposure /lib/systemd/system/strata.service)
ticker_exposure=$(exposure /lib/systemd/system/strata-pgq-ticker.service)
worker_exposure=$(exposure '/lib/systemd/system/strata-londiste@.service')
archiver_exposure=$(exposure /lib/systemd/system/strata-wal-archiver.service)
for pair in "strata.service $server_exposure $SERVER_EXPOSURE_MAX" \
  "strata-pgq-ticker.service $ticker_exposure $WORKER_EXPOSURE_MAX" \
  "strata-londiste@.service $worker_exposure $WORKER_EXPOSURE_MAX" \
  "strata-wal-archiver.service $archiver_exposure $WORKER_EXPOSURE_MAX"; do
  set -- $pair
  [ -n "${2:-}" ] || fail "no exposure level for $1"
  awk -v e="$2" -v m="$3" 'BEGIN { exit !(e <= m) }' || fail "$1: exposure $2 is above $3"
done

step "Dockerfile (BuildKit's parser; its runtime stage is the image built next)"
"$tools/venv/bin/python" packaging/validate/dockerfile_check.py Dockerfile || fail "the Dockerfile"

step "container image without a registry (buildah from scratch), run as its user and as uid $SIDECAR_UID"
image=localhost/strata:packaging-check
buildah rmi -f "$image" >/dev/null 2>&1 || true
packaging/image/build-local.sh "$bin" "$image" "$work/strata-image.tar" "$IMAGE_UID"
image_size=$(buildah images --noheading --format '{{.Size}}' "$image")
archive_size=$(stat -c %s "$work/strata-image.tar")
[ "$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")" = "$IMAGE_UID:$IMAGE_UID" ] \
  || fail "the image's user is not $IMAGE_UID:$IMAGE_UID"
# No container runtime can start here (no cgroup controllers to delegate): the image's own
# root filesystem runs under chroot isolation, with the image's user, environment and
# entrypoint. Mounted: a directory to back up and one for the repository and the restore.
ctr=$(buildah from "$image")
# The image's user runs as built; another uid (a sidecar's: the database's) gets a state
# directory of its own, as docs/install.md tells (the image's /var/lib/strata is 10001's,
# 0700). Not mounted over /var/lib/strata: `buildah run` puts a copy of the image's
# declared volume there whatever -v says; STRATA_STATE_DIR points elsewhere instead.
# Anything on stderr (a warning such as an unwritable files cache) fails the check.
run_image() { # UID ARGS... (the entrypoint is /usr/bin/strata)
  local uid=$1 state=()
  shift
  [ "$uid" = "$IMAGE_UID" ] || state=(-v "$work/img-state:/state" -e STRATA_STATE_DIR=/state)
  local status=0 attempt
  # buildah's own failures (setting up the chroot, not strata's) exit 125: those are tried
  # once more, saying so; strata's exit codes (0-7) and a timeout (124) are the result.
  for attempt in 1 2; do
    status=0
    timeout 120 buildah run --isolation chroot --user "$uid:$uid" -e STRATA_PASSWORD=image-check \
      -v "$work/img:/data" "${state[@]}" "$ctr" -- /usr/bin/strata "$@" 2>"$work/img-stderr" || status=$?
    [ "$status" = 125 ] && [ "$attempt" = 1 ] || break
    echo "packaging-check: buildah run failed (125), trying once more: $(cat "$work/img-stderr")" >&2
  done
  [ "$status" = 0 ] || fail "the image (uid $uid, $*) exited $status$([ "$status" != 124 ] || echo ' (timed out after 120 s)'): $(cat "$work/img-stderr")"
  [ ! -s "$work/img-stderr" ] || fail "the image (uid $uid, $*) said: $(cat "$work/img-stderr")"
}
for uid in $IMAGE_UID $SIDECAR_UID; do
  rm -rf "$work/img" "$work/img-state" && mkdir -p "$work/img/src/sub" "$work/img-state"
  chown "$uid:$uid" "$work/img-state" && chmod 0700 "$work/img-state"
  printf 'hello\n' >"$work/img/src/a"
  head -c 200000 /dev/urandom >"$work/img/src/sub/b"
  chmod 0700 "$work/img/src"
  chown -R "$uid:$uid" "$work/img"
  run_image "$uid" --repo /data/repo --quiet init
  run_image "$uid" --repo /data/repo --quiet backup --node-name img /data/src
  run_image "$uid" --repo /data/repo --quiet restore latest --to /data/out
  diff -r "$work/img/src" "$work/img/out" >/dev/null || fail "the image's restore (uid $uid) differs"
  [ "$(stat -c %u "$work/img/repo/config")" = "$uid" ] || fail "the image did not run as uid $uid"
done

# The image as a server: `strata server` from the image's entrypoint, timed from the start
# of `buildah run` to the first 200 of GET /health (loopback; chroot isolation shares the
# host's network), then /ready, then SIGTERM, which must end it (exit 0) within 60 s.
rm -rf "$work/srv" && mkdir -p "$work/srv/src"
printf 'served\n' >"$work/srv/src/f"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/srv/server.toml" <<TOML
default_storage = "local"
[storages.local]
path = "/data/repo"
[[nodes]]
name = "img"
roots = ["/data/src"]
[server]
node = "img"
listen = "127.0.0.1:$port"
TOML
chown -R "$IMAGE_UID:$IMAGE_UID" "$work/srv"
server_env=(-e STRATA_PASSWORD=image-check -e STRATA_TOKEN=image-user-token
  -e STRATA_AGENT_TOKEN=image-agent-token -v "$work/srv:/data")
timeout 60 buildah run --isolation chroot "${server_env[@]}" "$ctr" -- \
  /usr/bin/strata --config /data/server.toml --quiet init
t0=$(date +%s%N)
buildah run --isolation chroot "${server_env[@]}" "$ctr" -- \
  /usr/bin/strata --config /data/server.toml server >"$work/srv.log" 2>&1 &
server_pid=$!
until curl -fsS -o "$work/health.json" "http://127.0.0.1:$port/health" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || fail "strata server in the image exited: $(cat "$work/srv.log")"
  [ $(($(date +%s%N) - t0)) -lt 30000000000 ] || { kill "$server_pid" 2>/dev/null || true; fail "no /health within 30 s: $(cat "$work/srv.log")"; }
  sleep 0.02
done
health_ms=$((($(date +%s%N) - t0) / 1000000))
grep -q '"status": *"ok"' "$work/health.json" || { kill "$server_pid" 2>/dev/null || true; fail "/health said $(cat "$work/health.json")"; }
ready=$(curl -sS -o "$work/ready.json" -w '%{http_code}' "http://127.0.0.1:$port/ready")
[ "$ready" = 200 ] || { kill "$server_pid" 2>/dev/null || true; fail "/ready answered $ready: $(cat "$work/ready.json")"; }
# The compose example's healthcheck (the image has no curl): the binary asks its
# server's /ready, as compose runs it (the test's port in place of 7370).
healthcheck=$(sed -n 's/^ *test: \["CMD", "\/usr\/bin\/strata", \(.*probe.*\)\]$/\1/p' examples/compose/compose.yaml \
  | tr -d '",' | sed "s|127.0.0.1:7370|127.0.0.1:$port|")
[ -n "$healthcheck" ] || fail "examples/compose/compose.yaml has no strata probe healthcheck"
timeout 30 buildah run --isolation chroot "${server_env[@]}" "$ctr" -- /usr/bin/strata \
  $healthcheck >"$work/probe.log" 2>&1 \
  || { kill "$server_pid" 2>/dev/null || true; fail "the compose healthcheck (strata $healthcheck) failed: $(cat "$work/probe.log")"; }
grep -q "ready" "$work/probe.log" || { kill "$server_pid" 2>/dev/null || true; fail "strata $healthcheck said: $(cat "$work/probe.log")"; }

# SIGTERM to strata itself (buildah would kill its child, not pass the signal on), as a
# container runtime's stop does; buildah run then exits with strata's status.
strata_pid=
for p in $(descendants "$server_pid"); do
  [ "$(ps -o comm= -p "$p")" = strata ] && strata_pid=$p
done
[ -n "$strata_pid" ] || { kill "$server_pid" 2>/dev/null || true; fail "no strata process under buildah run"; }
kill -TERM "$strata_pid"
for _ in $(seq 600); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$strata_pid" "$server_pid"; fail "strata server in the image ignored SIGTERM for 60 s"; fi
wait "$server_pid" || fail "strata server in the image exited $? on SIGTERM: $(cat "$work/srv.log")"
server_pid=

buildah rm "$ctr" >/dev/null
ctr=
buildah rmi -f "$image" >/dev/null

step "Kubernetes manifests (kubernetes-validate --strict; ServiceMonitor against its CRD schema)"
k8s=(deploy/kubernetes/*.yaml)
core=()
for f in "${k8s[@]}"; do grep -q '^kind: ServiceMonitor' "$f" || core+=("$f"); done
"$tools/venv/bin/kubernetes-validate" --strict --quiet "${core[@]}" \
  || fail "Kubernetes manifests do not validate"
# kubernetes-validate only warns on kinds it has no schema for (exit 0): make sure every
# document of the core files is a kind it checked.
"$tools/venv/bin/kubernetes-validate" --strict "${core[@]}" 2>&1 | grep -i "couldn't find schema" \
  && fail "a manifest has a kind without a Kubernetes schema (above)"
"$tools/venv/bin/python" packaging/validate/yaml2json.py deploy/kubernetes/*servicemonitor*.yaml \
  | node packaging/validate/servicemonitor.mjs "$tools/node_modules" \
  || fail "the ServiceMonitor does not validate against its CRD schema"

step "docker compose example (the Compose specification's JSON schema)"
"$tools/venv/bin/python" packaging/validate/compose.py examples/compose/compose-spec.schema.json \
  examples/compose/compose.yaml || fail "examples/compose/compose.yaml does not validate"
/usr/bin/strata --config examples/compose/strata.toml config show >/dev/null \
  || fail "examples/compose/strata.toml does not parse"
for f in agent coordinator; do
  "$tools/venv/bin/python" -c 'import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
sys.stdout.write(next(d for d in docs if d["kind"] == "ConfigMap")["data"][sys.argv[2] + ".toml"])' \
    deploy/kubernetes/20-configmap.yaml "$f" >"$work/$f.toml"
  /usr/bin/strata --config "$work/$f.toml" config show >/dev/null \
    || fail "the ConfigMap's $f.toml does not parse"
done

step "dpkg -r (only the conffile stays), then dpkg --purge (nothing stays)"
dpkg -r strata >/dev/null
[ "$(dpkg-query -W -f '${db:Status-Status}' strata)" = config-files ] || fail "after dpkg -r the package is not in state config-files"
[ -f /etc/strata/strata.toml ] || fail "dpkg -r removed the conffile"
while read -r path; do
  [ "$path" = /etc/strata ] || [ "$path" = /etc/strata/strata.toml ] && continue
  [ -d "$path" ] && continue # shared directories (/usr/bin, /lib/systemd/system ...)
  [ ! -e "$path" ] || fail "dpkg -r left $path"
done <"$work/installed-files"
dpkg --purge strata >/dev/null
installed=0
dpkg -s strata >/dev/null 2>&1 && fail "the package is still known after --purge"
[ ! -e /etc/strata ] || fail "dpkg --purge left /etc/strata: $(ls -la /etc/strata)"
[ ! -e /var/lib/strata ] || fail "dpkg --purge left /var/lib/strata"
while read -r path; do
  [ -d "$path" ] && continue
  [ ! -e "$path" ] || fail "dpkg --purge left $path"
done <"$work/installed-files"

rm -rf "$tree"
total=$(($(date +%s) - started))
echo "==> packaging: all checks passed in ${total}s"
printf '    stripped binary  %s bytes (%s MiB)\n' "$bin_size" "$(awk -v b="$bin_size" 'BEGIN { printf "%.1f", b / 1048576 }')"
printf '    Debian package   %s bytes (%s MiB)\n' "$deb_size" "$(awk -v b="$deb_size" 'BEGIN { printf "%.1f", b / 1048576 }')"
printf '    image            %s (OCI archive %s bytes)\n' "$image_size" "$archive_size"
printf '    image start to a healthy /health  %s ms\n' "$health_ms"
printf '    exposure         strata.service %s, strata-pgq-ticker.service %s, strata-londiste@.service %s, strata-wal-archiver.service %s\n' \
  "$server_exposure" "$ticker_exposure" "$worker_exposure" "$archiver_exposure"
