#!/usr/bin/env bash
# `mopt inspect` on every malformed model in tests/malformed/ must exit 2
# (bad input) and print exactly one line on stderr that names the file; the
# valid base model the files were made from must exit 0.
# Usage: test_malformed.sh path/to/mopt
set -u
mopt=${1:?usage: $0 path/to/mopt}
dir=$(cd "$(dirname "$0")/../malformed" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fails=0
count=0
for f in "$dir"/*.tflite; do
    [ -e "$f" ] || { echo "no malformed files in $dir"; exit 1; }
    count=$((count + 1))
    "$mopt" inspect "$f" >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    lines=$(wc -l <"$tmp/err")
    # A message without a final newline still counts as one line.
    if [ -s "$tmp/err" ] && [ -n "$(tail -c 1 "$tmp/err")" ]; then
        lines=$((lines + 1))
    fi
    if [ "$rc" -ne 2 ]; then
        echo "FAIL $f: exit code $rc (expected 2)"
        fails=$((fails + 1))
    elif [ "$lines" -ne 1 ]; then
        echo "FAIL $f: $lines lines on stderr (expected 1):"
        sed 's/^/    /' "$tmp/err"
        fails=$((fails + 1))
    elif ! grep -qF -- "$f" "$tmp/err"; then
        echo "FAIL $f: stderr does not name the file: $(cat "$tmp/err")"
        fails=$((fails + 1))
    fi
done

# The base model itself is fine: the failures above come from the damage.
cp "$dir/valid_base.tflite.ok" "$tmp/valid.tflite"
"$mopt" inspect "$tmp/valid.tflite" >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "FAIL valid base model: exit code $rc (expected 0): $(head -c 300 "$tmp/err")"
    fails=$((fails + 1))
fi

echo "$count malformed files checked, $fails failures"
[ "$fails" -eq 0 ]
