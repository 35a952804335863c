# bench/measure.sh - sourced by the scale benchmarks (scale.sh, gc_memory.sh, fresh_index.sh).
#
# measure LABEL CMD...: runs CMD (its output in $W/last.out and $W/last.err) under
# bench/peak.py, which samples its RssAnon and RssFile from /proc every millisecond and
# takes the kernel's peak RSS at its end; prints
# "<label> <seconds> <peak RssAnon MiB> <peak RssFile MiB> <peak RSS MiB>", or the
# command's error and exits when it fails.
measure() {
  local label=$1; shift
  local result
  result=$(python3 "$(dirname "${BASH_SOURCE[0]}")/peak.py" "$W/last.out" "$W/last.err" "$@") \
    || { echo "$label failed:"; cat "$W/last.err"; exit 1; }
  read -r seconds anon file rss <<<"$result"
  printf '%-44s %8.2f s %8.1f MiB anon %8.1f MiB file %8.1f MiB peak RSS\n' "$label" \
    "$seconds" "$anon" "$file" "$rss"
}
