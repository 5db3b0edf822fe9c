#!/usr/bin/env bash
# Fuzzes ferrowsgi-proto's codecs (HTTP/1.1, FastCGI, AJP13, SCGI, uwsgi) and PROXY
# header decoder with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh smoke            # every target for 20 s (CI); exit 1 on a crash
#   scripts/fuzz.sh long SECONDS     # every target for SECONDS, one after another
#   scripts/fuzz.sh run TARGET SECS  # one target
#   scripts/fuzz.sh replay           # replay seeds + reproducers on stable (cargo test)
#
# Targets: head, head_split, body, fastcgi, ajp, proxy, scgi, uwsgi (fuzz/fuzz_targets/,
# checks in fuzz/src/). A target uses fuzz/<target>.dict when there is one, else
# fuzz/http.dict.
# Builds are optimised with debug assertions and overflow checks on (-O -a).
# Only stable Rust is assumed: cargo-fuzz's nightly flags (-Zsanitizer, …) are
# unlocked with RUSTC_BOOTSTRAP=1, for the fuzz crate's build only.
# New inputs go to fuzz/work-corpus/<target>/ (git-ignored); fuzz/corpus/<target>/
# (the seeds) is only read. Crashes land in fuzz/artifacts/<target>/, full logs
# in fuzz/logs/<target>.log.
#
# Do not pause (SIGSTOP) a running target: libFuzzer's per-input timeout
# counts wall time, so the pause is reported as a timeout.
#
# Environment: FUZZ_SANITIZER (default "address"; "none" is faster),
# FUZZ_MAX_LEN (default 4096), FUZZ_TARGETS (default "head head_split body fastcgi ajp
# proxy scgi uwsgi").
#
# Prints one summary line per target:
#   fuzz-summary target=head seconds=20 execs=123456 result=ok
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=${FUZZ_TARGETS:-"head head_split body fastcgi ajp proxy scgi uwsgi"}
SANITIZER=${FUZZ_SANITIZER:-address}
MAX_LEN=${FUZZ_MAX_LEN:-4096}
export RUSTC_BOOTSTRAP=1

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "== installing cargo-fuzz" >&2
        cargo install cargo-fuzz --version '^0.13' --locked
    fi
}

build() {
    echo "== building fuzz targets (sanitizer: $SANITIZER)" >&2
    cargo fuzz build --fuzz-dir fuzz -O -a -s "$SANITIZER" >&2
}

# run_one TARGET SECONDS: fuzzes one target, prints its summary line, and
# returns non-zero if libFuzzer found a crash (or failed otherwise).
run_one() {
    local target=$1 secs=$2
    local work="fuzz/work-corpus/$target" log="fuzz/logs/$target.log"
    local dict=fuzz/http.dict
    if [ -f "fuzz/$target.dict" ]; then
        dict="fuzz/$target.dict"
    fi
    mkdir -p "$work" fuzz/logs "fuzz/artifacts/$target"
    local rc=0
    # The outer timeout only guards against a hung build or libFuzzer itself.
    timeout --kill-after=30 $((secs + 300)) \
        cargo fuzz run --fuzz-dir fuzz -O -a -s "$SANITIZER" "$target" \
        "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 \
        -dict="$dict" -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    # Executions: libFuzzer's final stats, else the last "#N" status line.
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n1)
    if [ -z "$execs" ]; then
        execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n1)
    fi
    execs=${execs:-0}
    local result=ok artifact=""
    if [ "$rc" -ne 0 ]; then
        if grep -q 'ERROR: libFuzzer: timeout' "$log"; then
            result=timeout
        elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then
            result=oom
        elif grep -qE 'ERROR: libFuzzer|ERROR: AddressSanitizer|panicked at' "$log"; then
            result=crash
        else
            result="error(rc=$rc)"
        fi
        artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n1)
        {
            echo "---- $target: $result (log: $log)"
            grep -m1 -A3 'panicked at' "$log" || true
            grep -m3 -E 'ERROR: (libFuzzer|AddressSanitizer)' "$log" || true
            if [ -n "$artifact" ]; then
                echo "artifact: $artifact"
                echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $target $artifact"
                echo "minimise:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz $target $artifact"
            else
                tail -n 20 "$log"
            fi
            echo "----"
        } >&2
    fi
    echo "fuzz-summary target=$target seconds=$secs execs=$execs result=$result${artifact:+ artifact=$artifact}"
    [ "$result" = ok ]
}

run_all() {
    local secs=$1 failed=0
    ensure_cargo_fuzz
    build
    for t in $TARGETS; do
        run_one "$t" "$secs" || failed=1
    done
    return "$failed"
}

case "${1:-}" in
    smoke)
        run_all 20
        ;;
    long)
        secs=${2:?usage: scripts/fuzz.sh long SECONDS}
        run_all "$secs"
        ;;
    run)
        target=${2:?usage: scripts/fuzz.sh run TARGET SECONDS}
        secs=${3:?usage: scripts/fuzz.sh run TARGET SECONDS}
        ensure_cargo_fuzz
        build
        run_one "$target" "$secs"
        ;;
    replay)
        (cd fuzz && env -u RUSTC_BOOTSTRAP cargo test --lib -q)
        ;;
    *)
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
