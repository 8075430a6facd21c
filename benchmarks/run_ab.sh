#!/usr/bin/env bash
# `make run` (python -m jaxconv, the default config) with the source tree of commit BEFORE
# against this checkout's, alternating, ROUNDS times: the whole command's wall seconds,
# the run's own wall_seconds, its test accuracy and params_sha256 prefix.
#   bash benchmarks/run_ab.sh 3edd413 3
set -euo pipefail
before=${1:?a commit to compare against}; rounds=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd); python=$here/.venv/bin/python
scratch=$(mktemp -d); trap 'git -C "$here" worktree remove --force "$scratch/before"; rm -rf "$scratch"' EXIT
git -C "$here" worktree add -q --detach "$scratch/before" "$before"
cd "$scratch"
for round in $(seq "$rounds"); do
  for side in before after; do
    src=$scratch/before/src; [ "$side" = after ] && src=$here/src
    start=$(date +%s.%N)
    PYTHONPATH=$src "$python" -m jaxconv "hydra.run.dir=$side-$round" trainer.progress=false >/dev/null 2>&1
    end=$(date +%s.%N)
    "$python" -c "import json,sys; r=json.load(open('$side-$round/result.json')); print('$side', $round, round($end-$start, 1), round(r['wall_seconds'], 1), r['test_accuracy'], r['params_sha256'][:12])"
  done
done
