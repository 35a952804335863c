#!/usr/bin/env bash
# Generates what the Debian package and the container image ship beside the binary, from
# the binary itself (so they always match its command line): shell completions
# (`strata completions bash|zsh|fish`) and man pages (`strata man DIR`: strata.1 and one
# page per subcommand, gzipped as Debian installs them).
# Usage: packaging/build-assets.sh BINARY OUTDIR. Fails if the binary cannot make them.
set -euo pipefail
bin=${1:?usage: build-assets.sh BINARY OUTDIR}
out=${2:?usage: build-assets.sh BINARY OUTDIR}
rm -rf "$out"
mkdir -p "$out/completions" "$out/man"
"$bin" completions bash >"$out/completions/strata.bash"
"$bin" completions zsh >"$out/completions/_strata"
"$bin" completions fish >"$out/completions/strata.fish"
for f in "$out"/completions/*; do
  [ -s "$f" ] || { echo "build-assets: $f is empty" >&2; exit 1; }
done
"$bin" man "$out/man"
[ -s "$out/man/strata.1" ] || { echo "build-assets: no strata.1 from \`strata man\`" >&2; exit 1; }
gzip -9n "$out"/man/*.1
echo "build-assets: $(ls "$out/man" | wc -l) man pages, 3 completion scripts in $out" >&2
