#!/usr/bin/env bash
# The whole test suite: formatting, lints (host and wasm32-wasip2), the component build, and
# every test (unit, simulator conformance, end-to-end against the real component).
# Usage: bash tests/run-all.sh      (from anywhere; CI runs it through .ci/run)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -a STEPS=()
declare -a TIMES=()
START_ALL=$SECONDS

step() {
    local name="$1"
    shift
    echo
    echo "==> ${name}: $*"
    local start=$SECONDS
    if ! "$@"; then
        echo
        echo "FAILED: ${name} (after $((SECONDS - start)) s): $*"
        echo "Steps that passed: ${STEPS[*]:-none}"
        exit 1
    fi
    STEPS+=("${name}")
    TIMES+=("$((SECONDS - start))")
}

step "format" cargo fmt --all --check
step "clippy (host)" cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32-wasip2)" cargo clippy --target wasm32-wasip2 -p ml-connector -- -D warnings
step "component build" cargo build --target wasm32-wasip2 --profile component -p ml-connector
# The e2e tests run the ml-harness binary as a subprocess; build it now so they find it ready.
step "harness binary" cargo build -p ml-e2e -p ml-harness --bin ml-harness
export ML_HARNESS_BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/ml-harness"
step "tests" cargo test --workspace

echo
echo "==> Summary: all steps passed in $((SECONDS - START_ALL)) s"
for i in "${!STEPS[@]}"; do
    printf '    %-24s %5s s\n' "${STEPS[$i]}" "${TIMES[$i]}"
done
