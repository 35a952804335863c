# bench/measure.sh - sourced by the scale benchmarks (scale.sh, gc_memory.sh).
#
# measure LABEL CMD...: runs CMD (its output in $W/last.out and $W/last.err), sampling
# its RssAnon and RssFile from /proc every 50 ms; prints
# "<label> <seconds> <peak RssAnon MiB> <peak RssFile MiB>", or the command's error and
# exits when it fails.
measure() {
  local label=$1; shift
  local start end pid anon=0 file=0 a f
  start=$(date +%s.%N)
  "$@" >"$W/last.out" 2>"$W/last.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [[ -r /proc/$pid/status ]]; then
      a=$(awk '/^RssAnon/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
      f=$(awk '/^RssFile/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
      (( ${a:-0} > anon )) && anon=${a:-0}
      (( ${f:-0} > file )) && file=${f:-0}
    fi
    sleep 0.05
  done
  wait "$pid" || { echo "$label failed:"; cat "$W/last.err"; exit 1; }
  end=$(date +%s.%N)
  printf '%-44s %8.2f s %8.1f MiB anon %8.1f MiB file\n' "$label" \
    "$(echo "$end - $start" | bc)" "$(echo "$anon / 1024" | bc -l)" "$(echo "$file / 1024" | bc -l)"
}
