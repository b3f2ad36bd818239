#!/usr/bin/env bash
# `mopt train` on the committed Fashion-MNIST subset (1,000 train / 500 test
# images): output file, JSON report, the exported model's accuracy in
# `mopt eval` equals the reported test accuracy, identical files for the same
# seed and thread count, kill -9 then --resume gives the same file as an
# uninterrupted run, and bad input: one-line errors, exit codes, no output.
# Usage: tests/cli/test_train.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
DATA=tests/data/fashion-mnist-subset
SPEC='spec:conv 8 3 bn relu; maxpool 2; conv 16 3 s 2 bn relu; flatten; dropout 0.2; fc 32 relu; fc classes'

expect() {
  local want=$1; shift
  "$MOPT" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" = "$want" ]; then ok "mopt $* -> $rc"; else
    bad "mopt $* -> $rc, want $want"; sed 's/^/    /' "$T/err" | head -5; fi
}

# 1. a run with a JSON report; the exported model evaluates to the same accuracy
expect 0 train --arch "$SPEC" --data $DATA --epochs 2 --batch 32 --seed 3 --threads 2 \
  --json -o "$T/a.tflite"
[ -s "$T/a.tflite" ] && ok "output written" || bad "no output file"
acc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["test_accuracy"])' "$T/out")
n_ep=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["epochs"]))' "$T/out")
[ "$n_ep" = 2 ] && ok "two epochs reported" || bad "epochs in JSON: $n_ep"
"$MOPT" eval "$T/a.tflite" --data $DATA --json >"$T/eval" 2>"$T/err" || bad "eval failed"
eacc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$T/eval")
python3 -c 'import sys; a,b=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= 0.0005 else 1)' \
  "$acc" "$eacc" && ok "eval accuracy $eacc == train's test accuracy $acc" \
  || bad "eval accuracy $eacc != train's $acc"

# 2. same seed and threads: identical file
expect 0 train --arch "$SPEC" --data $DATA --epochs 2 --batch 32 --seed 3 --threads 2 \
  -o "$T/b.tflite"
cmp -s "$T/a.tflite" "$T/b.tflite" && ok "same seed, same file" || bad "files differ"

# 3. kill -9 during training, then --resume: the same file as an uninterrupted
#    run. 30 epochs of batch 8 take a few seconds, so the kill lands mid-run;
#    a run that finished before the kill would make this check vacuous: fail.
expect 0 train --arch "$SPEC" --data $DATA --epochs 30 --batch 8 --seed 5 --threads 2 \
  -o "$T/full.tflite"
"$MOPT" train --arch "$SPEC" --data $DATA --epochs 30 --batch 8 --seed 5 --threads 2 \
  --checkpoint "$T/run.ckpt" --checkpoint-every 7 -o "$T/res.tflite" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 400); do [ -s "$T/run.ckpt" ] && break; sleep 0.05; done
sleep 0.4
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
rc=$?
[ "$rc" = 137 ] && ok "training killed mid-run (status $rc)" \
  || bad "training was not killed mid-run (status $rc)"
[ -s "$T/run.ckpt" ] && ok "checkpoint left by the killed run" || bad "no checkpoint"
[ -e "$T/res.tflite" ] && bad "killed run left an output file"
expect 0 train --arch "$SPEC" --data $DATA --epochs 30 --batch 8 --seed 5 --threads 2 \
  --checkpoint "$T/run.ckpt" --resume -o "$T/res.tflite"
grep -q "resum" "$T/out" "$T/err" && ok "run says it resumed" || bad "no resume message"
cmp -s "$T/full.tflite" "$T/res.tflite" && ok "resumed run == uninterrupted run" \
  || bad "resumed run differs"

# 4. bad input
expect 1 train --arch vgg --data $DATA -o "$T/x.tflite"
expect 1 train --arch cnn --optimizer rmsprop --data $DATA -o "$T/x.tflite"
expect 1 train --arch cnn --data $DATA
expect 1 train --arch cnn --from "$T/a.tflite" --data $DATA -o "$T/x.tflite"
expect 2 train --arch "$SPEC" --data $DATA --epochs 2 --optimizer sgd --lr 1e6 \
  --checkpoint "$T/nan.ckpt" -o "$T/x.tflite"
grep -q "diverged" "$T/err" && ok "divergence message" || bad "no divergence message"
[ -e "$T/x.tflite" ] && bad "output written despite failure" || ok "no output on failure"
printf 'garbage' >"$T/bad.ckpt"
expect 2 train --arch "$SPEC" --data $DATA --epochs 1 --checkpoint "$T/bad.ckpt" --resume \
  -o "$T/x.tflite"
[ "$(wc -l <"$T/err")" = 1 ] && ok "one-line error" || bad "error is not one line"
expect 1 train --arch "spec:conv 8 3; fc 3" --data $DATA --epochs 1 -o "$T/x.tflite"

# 5. fine-tune an imported model
expect 0 train --from "$T/a.tflite" --data $DATA --epochs 1 --lr 1e-4 -o "$T/ft.tflite"
[ -s "$T/ft.tflite" ] && ok "fine-tuned model written" || bad "no fine-tuned model"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "all ok"
