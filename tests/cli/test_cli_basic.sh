#!/usr/bin/env bash
# CLI basics: help, version, exit codes and one-line errors.
# Usage: tests/cli/test_cli_basic.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# expect RC ARGS...: runs mopt, keeps stdout/stderr in $T/out, $T/err.
expect() {
  local want=$1; shift
  "$MOPT" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" = "$want" ]; then ok "mopt $* -> $rc"; else
    bad "mopt $* -> $rc, want $want"; sed 's/^/    /' "$T/err" | head -5; fi
}
# The last command's stderr is exactly one line "mopt: ..." containing $1.
one_error_line() {
  local n; n=$(wc -l <"$T/err")
  if [ "$n" = 1 ] && grep -q '^mopt: ' "$T/err" && grep -qF -- "$1" "$T/err"; then
    ok "  error line mentions '$1'"
  else
    bad "  stderr should be one 'mopt: ' line mentioning '$1', got:"; sed 's/^/    /' "$T/err"
  fi
}
stdout_has() {
  if grep -qE -- "$1" "$T/out"; then ok "  stdout matches /$1/"; else
    bad "  stdout lacks /$1/"; head -5 "$T/out" | sed 's/^/    /'; fi
}

expect 1; one_error_line "no command"
expect 1 frobnicate; one_error_line "unknown command 'frobnicate'"
expect 1 --frobnicate; one_error_line "unknown option"
expect 0 --version
if [ "$(cat "$T/out")" = "mopt 0.1.0" ]; then ok "  version string"; else bad "  version: $(cat "$T/out")"; fi
expect 0 --help; stdout_has '^usage: mopt'
for c in inspect run eval bench copy; do
  expect 0 --help; stdout_has "^  $c "
  expect 0 help "$c"; stdout_has "^usage: mopt $c"
  expect 0 "$c" --help; stdout_has "^usage: mopt $c"
  expect 0 "$c" -h; stdout_has "^usage: mopt $c"
  expect 1 "$c"; one_error_line "$c: missing"
  expect 1 "$c" --no-such-option x.tflite; one_error_line "unknown option '--no-such-option'"
done
expect 1 help frobnicate; one_error_line "unknown command 'frobnicate'"

# Missing, unreadable and malformed files: exit 2 naming the file.
expect 2 inspect "$T/missing.tflite"; one_error_line "$T/missing.tflite"
expect 2 inspect "$T"; one_error_line "$T"
printf 'this is not a flatbuffer at all' >"$T/junk.tflite"
expect 2 inspect "$T/junk.tflite"; one_error_line "junk.tflite"
: >"$T/empty.tflite"
expect 2 inspect "$T/empty.tflite"; one_error_line "empty.tflite"
expect 2 run "$T/missing.tflite" --input x.npy; one_error_line "missing.tflite"
expect 2 eval "$T/missing.tflite" --data tests/data/fashion-mnist-subset; one_error_line "missing.tflite"
expect 2 bench "$T/missing.tflite"; one_error_line "missing.tflite"
expect 2 copy "$T/missing.tflite" -o "$T/x.tflite"; one_error_line "missing.tflite"

# Usage errors in option values.
expect 1 eval m.tflite; one_error_line "missing --data"
expect 1 eval m.tflite --data d --limit abc; one_error_line "--limit"
expect 1 eval m.tflite --data d --limit 0; one_error_line "--limit"
expect 1 eval m.tflite --data d --scale 255; one_error_line "--scale"
expect 1 eval m.tflite --data d --threads; one_error_line "needs a value"
expect 1 bench m.tflite --runs 0; one_error_line "--runs"
expect 1 bench m.tflite --runs 12x; one_error_line "--runs"
expect 1 run m.tflite; one_error_line "missing --input"
expect 1 inspect a.tflite b.tflite; one_error_line "unexpected argument 'b.tflite'"
expect 1 inspect --json=yes a.tflite; one_error_line "takes no value"
expect 1 copy m.tflite; one_error_line "missing -o"

echo
if [ "$fails" = 0 ]; then echo "test_cli_basic: all passed"; else echo "test_cli_basic: $fails failed"; exit 1; fi
