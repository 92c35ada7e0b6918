#!/usr/bin/env bash
# test.sh - install what is missing, build qhost and run the whole test suite.
# QHOST_SANITIZE=1 builds in build-asan with -fsanitize=address,undefined instead.
# Prints 'N passed, N failed[, N skipped]' last; exits non-zero when a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
dir=build
opts=()
if [ "${QHOST_SANITIZE:-0}" = 1 ]; then
    dir=build-asan
    opts=(-Db_sanitize=address,undefined -Db_lundef=false)
fi
[ -f "$dir/build.ninja" ] || meson setup "$dir" "${opts[@]}" >/dev/null
ninja -C "$dir"
status=0
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    meson test -C "$dir" --print-errorlogs --num-processes 2 || status=$?
python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
for line in open(sys.argv[1]):
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        counts["OK"] += 1
    elif r == "SKIP":
        counts["SKIP"] += 1
    else:
        counts["FAIL"] += 1
print(f"{counts['OK']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
PY
exit $status
