#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints executions and
# executions per second per target. Needs the nightly toolchain (libFuzzer's sanitizer
# coverage); cargo-fuzz is installed into the tools folder on first use. A crash fails the
# script and leaves its input under fuzz/artifacts/TARGET/: turn it into a regression test in
# the crate the target covers.
#   scripts/fuzz.sh [seconds per target, default 30, at most 60] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ] || [ "$seconds" -gt 60 ]; then
  echo "fuzz: seconds per target must be 1–60, not '$seconds'" >&2
  exit 2
fi

TOOLS="${EMBER_TOOLS_DIR:-/var/cache/ember/tools}"
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --version '^0.13' --locked --root "$TOOLS" --quiet
fi
export PATH="$TOOLS/bin:$PATH"
# The sanitizer build never shares a folder with the normal one.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/ember/target}-fuzz"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Niced: the fuzz build is long and the machine is shared with other builds and tests.
nice -n 10 cargo +nightly fuzz build

failed=()
printf '%-26s %12s %12s\n' target executions 'execs/s'
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  log=$(mktemp)
  # The committed corpus is the seed; what this run finds goes to a scratch folder, so the
  # repository keeps small seeds only.
  scratch=$(mktemp -d)
  if nice -n 10 cargo +nightly fuzz run "$target" "$scratch" "$corpus" -- \
      -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
      -artifact_prefix="$PWD/fuzz/artifacts/$target/" >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$target")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  printf '%-26s %12s %12s %s\n' "$target" "${execs:-?}" "${rate:-?}" "$([ "$status" = ok ] || echo CRASH)"
  if [ "$status" != ok ]; then
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
  fi
  rm -rf "$log" "$scratch"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
