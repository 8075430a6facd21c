#!/usr/bin/env bash
# The MNIST-1D table: logistic regression, MLP, the paper's CNN and our default CNN,
# 5 seeds each, then the summary. Run from anywhere; takes ~6 minutes on 2 CPU cores.
#   experiments/mnist1d_table/run.sh [SWEEP_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${JAXCONV_BIN:-$root/.venv/bin}"
sweep="${1:-$root/multirun/mnist1d_table}"

# Re-running skips the jobs that already finished ("ok" in their result.json).
"$bin/jaxconv-train" -m \
  experiment=mnist1d_logreg,mnist1d_mlp,mnist1d_paper,mnist1d_cnn \
  seed=0,1,2,3,4 \
  trainer.progress=false \
  hydra.sweep.dir="$sweep"

"$bin/jaxconv-summarize" "$sweep"
cp "$sweep"/summary.md "$sweep"/summary.csv "$sweep"/summary.png "$sweep"/curves.png "$here/results/"
