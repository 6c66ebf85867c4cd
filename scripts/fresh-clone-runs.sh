#!/usr/bin/env bash
# Run the CI command (`CI=true make test`) on fresh clones of this repository, N times in a
# row, each with a fresh virtualenv, and print a table of the results. This is how the suite
# is shown to be green every time, first run included.
#
#   scripts/fresh-clone-runs.sh                 # 10 runs on a quiet machine
#   scripts/fresh-clone-runs.sh --runs 5 --busy # 5 runs with one core kept busy
#   scripts/fresh-clone-runs.sh --runs 3 --pytest-args "tests/browser -q"
#   scripts/fresh-clone-runs.sh --ref some-branch
#
# Each clone is made beside this checkout (so ../shared resolves as it does for CI) and
# removed after a passing run; a failing run's clone and log are kept for inspection.
# Logs and the summary go to test-artifacts/fresh-runs/<timestamp>/.
set -uo pipefail

runs=10
busy=0
ref=HEAD
pytest_args=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --busy) busy=1; shift ;;
    --ref) ref=$2; shift 2 ;;
    --pytest-args) pytest_args=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) || exit 2
parent=$(dirname "$top")
commit=$(git -C "$top" rev-parse "$ref") || { echo "unknown ref $ref" >&2; exit 2; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$top/test-artifacts/fresh-runs/$stamp"
mkdir -p "$out"
summary="$out/summary.txt"

burner=""
stop_burner() { [ -n "$burner" ] && kill "$burner" 2>/dev/null; burner=""; }
trap stop_burner EXIT
if [ "$busy" = 1 ]; then
  # one process spinning on one core, like a neighbour on a shared CI machine
  python3 -c 'while True: pass' &
  burner=$!
fi

{
  echo "commit $commit  runs $runs  busy-core $busy  started $(date -u +%FT%TZ)"
  echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-4s %-6s %-9s %s\n' run result seconds "pytest summary"
} | tee "$summary"

passed=0
for i in $(seq 1 "$runs"); do
  clone="$parent/fresh-run-$stamp-$i"
  log="$out/run-$i.log"
  rm -rf "$clone"
  git clone -q --no-hardlinks "$top" "$clone" && git -C "$clone" checkout -q "$commit"
  start=$(date +%s)
  if [ -n "$pytest_args" ]; then
    (cd "$clone" && CI=true make test PYTEST_ARGS="$pytest_args") >"$log" 2>&1
  else
    (cd "$clone" && .ci/run) >"$log" 2>&1
  fi
  rc=$?
  secs=$(( $(date +%s) - start ))
  line=$(grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | xargs)
  if [ $rc = 0 ]; then
    result=pass; passed=$((passed + 1))
    [ "$keep" = 1 ] || rm -rf "$clone"
  else
    result=FAIL
    cp -r "$clone/test-artifacts" "$out/run-$i-artifacts" 2>/dev/null
  fi
  printf '%-4s %-6s %-9s %s\n' "$i" "$result" "$secs" "${line:-(no pytest summary; see $log)}" \
    | tee -a "$summary"
done
echo "passed $passed of $runs; logs in $out" | tee -a "$summary"
[ "$passed" = "$runs" ]
