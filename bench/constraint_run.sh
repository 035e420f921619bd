#!/usr/bin/env bash
# One row of bench/constraint.md: Valor (`valor train` on split files) and, for a binary task,
# fairlearn's ExponentiatedGradient on the same rows. Files from bench/constraint_prep.py.
#
#   bench/constraint_run.sh VALOR DATA_DIR OUT_DIR TASK SEED [CONSTRAINT BOUND]
#
# TASK: builtin-bin (label_bin, rest/growth, by gender, text), builtin-3 (label, 3 classes, by
# gender, text; no peer), adult (income, <=50K/>50K, by sex, tabular features serialised as
# text by `--feature`; the peer one-hot encodes and standardises the same columns). A built-in
# task with `-v1200` (builtin-bin-v1200, builtin-3-v1200) reads builtin-valid1200/: the same
# test rows and peer rows, 1,200 validation rows taken from Valor's training rows.
# CONSTRAINT: demographic_parity or equalized_odds; none given = the unconstrained run.
# Writes OUT_DIR/<task>-<constraint>-<bound>-s<seed>/ (Valor's run folder, report.json) and,
# for binary tasks, .../peer.json. Extra `valor train` flags come from $VALOR_FLAGS.
set -euo pipefail
valor=$1 data=$2 out=$3 task=$4 seed=$5 constraint=${6:-} bound=${7:-}
peer_python=${PEER_PYTHON:-$HOME/.cache/valor-peers-venv/bin/python}
peer_script=${PEER_SCRIPT:-$(dirname "$0")/../../shared/bench/bench_reductions.py}
name="$task-${constraint:-none}-${bound:-0}-s$seed"
run="$out/$name"
mkdir -p "$out"

case $task in
  builtin-bin|builtin-bin-v1200)
    dir=$data/builtin
    cols=(--text-col text --label-col label_bin --labels rest,growth --group gender --id-col id)
    peer=(--label-col label_bin --positive growth --group gender --text-col text) ;;
  builtin-3|builtin-3-v1200)
    dir=$data/builtin
    cols=(--text-col text --label-col label --group gender --id-col id)
    peer=() ;;
  adult)
    dir=$data/adult
    features=(age workclass education marital_status occupation relationship race sex
              capital_gain capital_loss hours_per_week native_country)
    cols=(--label-col income --labels '<=50K,>50K' --group sex)
    peer=(--label-col income --positive '>50K' --group sex)
    for f in "${features[@]}"; do cols+=(--feature "$f"); peer+=(--feature "$f"); done ;;
  *) echo "unknown task $task" >&2; exit 2 ;;
esac
[[ $task == *-v1200 ]] && dir=$data/builtin-valid1200

flags=(--train "$dir/train.csv" --valid "$dir/valid.csv" --test "$dir/test.csv" "${cols[@]}"
       --seed "$seed" --out "$run" --overwrite --quiet --json)
[ -n "$constraint" ] && flags+=(--constraint "$constraint <= $bound")
# shellcheck disable=SC2206
flags+=(${VALOR_FLAGS:-})
start=$(date +%s)
set +e
"$valor" train "${flags[@]}" > "$run.report.json" 2> "$run.stderr"
rc=$?
set -e
echo "$name: valor exit $rc in $(( $(date +%s) - start )) s"

if [ ${#peer[@]} -gt 0 ] && [ -n "$constraint" ]; then
  pc=$constraint
  "$peer_python" "$peer_script" --train "$dir/peer_train.csv" --test "$dir/test.csv" \
    "${peer[@]}" --constraint "$pc" --bound "$bound" --seed "$seed" > "$run.peer.json"
  echo "$name: peer done"
fi
