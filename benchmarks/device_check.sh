#!/usr/bin/env bash
# The GPU check, in one script, for a machine that already has a CUDA JAX and no network.
#
#   make device-wheels          # here, once: the wheels the GPU machine lacks -> benchmarks/.whl/
#   OUT=/some/dir bash benchmarks/device_check.sh   # there, from the repository root
#
# It installs the wheels in benchmarks/.whl/ (hydra-core, omegaconf, antlr4, mnist1d,
# setuptools; git-ignored) and jaxconv itself without dependencies (nothing is
# downloaded), then, each step with its own time limit so that the whole stays under
# 8 minutes: the environment, the fast tests on the GPU, the backend and training-step
# benchmarks, and jaxconv-train on ResNet-20 with 32x32 synthetic images (float32 and
# bfloat16). Logs and a summary table (device_check.md) go to $OUT.
#
# CHECK_SCALE=small runs every step with tiny sizes: a dry run of the plumbing on a CPU.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device_check_out}
PY=${PYTHON:-python3}
SMALL=$([ "${CHECK_SCALE:-full}" = small ] && echo 1 || echo 0)
export OUT PY SMALL
# jaxconv runs from this checkout whether or not the editable install below succeeds
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
SUMMARY="$OUT/device_check.md"
export XLA_PYTHON_CLIENT_PREALLOCATE=false # tests and benchmarks share the GPU
export PYTHONUNBUFFERED=1

{
  echo "# jaxconv device check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| step | exit | seconds | log |"
  echo "| --- | --- | --- | --- |"
} >"$SUMMARY"

# step NAME LIMIT_SECONDS COMMAND...: run it, log it, add a row to the summary.
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "| $name | $rc$([ $rc = 124 ] && echo ' (time limit)') | $((SECONDS - start)) | $name.log |" >>"$SUMMARY"
  echo "== $name: exit $rc in $((SECONDS - start)) s"
  tail -n 15 "$OUT/$name.log"
}

install() {
  local wheel missing=()
  for wheel in benchmarks/.whl/*.whl; do # only what the machine lacks: nothing downgraded
    [ -e "$wheel" ] || continue
    "$PY" -m pip show -q "$(basename "$wheel" | cut -d- -f1)" >/dev/null 2>&1 || missing+=("$wheel")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    "$PY" -m pip install --no-index --no-deps "${missing[@]}" || return 1
  fi
  "$PY" -m pip install --no-index --no-deps --no-build-isolation -e . ||
    echo "(the editable install failed: jaxconv runs from src/ through PYTHONPATH)"
  "$PY" -c "import jaxconv, hydra, mnist1d; print('jaxconv', jaxconv.__file__)"
}

environment() {
  "$PY" - <<'EOF'
import jax, jaxconv
from jaxconv.train import parallel
print("jax", jax.__version__, "backend", jax.default_backend())
print("devices", jax.devices())
mesh = parallel.data_mesh("all")
print("mesh", parallel.describe(mesh))
from jaxconv.ops import ConvProblem, plan
print("auto on", jax.default_backend(), plan(ConvProblem((3, 3), 64, 64, platform=jax.default_backend())))
EOF
}

tests() {
  # in-process tests on the default (GPU) device; the CLI tests pin their subprocesses
  # to the CPU, so they are left to CI
  local where=(tests/ops tests/nn tests/models)
  [ "$SMALL" = 1 ] && where=(tests/ops/test_policy.py)
  "$PY" -m pytest -q -m "not slow" -p no:cacheprovider --maxfail=5 "${where[@]}"
}

train() {
  local dtype=$1 steps=$([ "$SMALL" = 1 ] && echo 20 || echo 400)
  local size=$([ "$SMALL" = 1 ] && echo 16 || echo 32)
  "$PY" -m jaxconv experiment=cifar10_resnet20 data=shapes "data.options.size=$size" \
    data.options.num_train=20000 data.options.num_test=2000 "trainer.max_steps=$steps" \
    trainer.eval_every=200 "trainer.compute_dtype=$dtype" \
    trainer.progress=false "hydra.run.dir=$OUT/resnet20_$dtype"
}

export -f install environment tests train
# limits add up to 460 s: under 8 minutes whatever happens
step install 60 install
step environment 30 environment
step tests 150 tests
if [ "$SMALL" = 1 ]; then
  step conv_backends 60 "$PY" benchmarks/conv_backends.py --quick --repeats 1
  step train_step 70 "$PY" benchmarks/train_step.py --repeats 1 --nets mnist1d
else
  step conv_backends 60 "$PY" benchmarks/conv_backends.py --quick --repeats 3
  step train_step 70 "$PY" benchmarks/train_step.py --repeats 3 --nets mnist,vgg6,resnet20
fi
step train_float32 45 train float32
step train_bfloat16 45 train bfloat16

{
  echo
  echo "## training runs (jaxconv-train, ResNet-20, synthetic 32x32 shapes)"
  echo
  echo "| compute dtype | status | steps | test accuracy | wall s | devices | platform |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for dtype in float32 bfloat16; do
    "$PY" - "$OUT/resnet20_$dtype/result.json" "$dtype" <<'EOF' || echo "| $dtype | no result | | | | | |"
import json, sys
r = json.load(open(sys.argv[1]))
acc = r.get("test_accuracy")
wall = r.get("wall_seconds")
print(f"| {sys.argv[2]} | {r['status']} | {r.get('steps')} | "
      f"{'' if acc is None else f'{100 * acc:.2f}%'} | {'' if wall is None else f'{wall:.1f}'} | "
      f"{r.get('devices')} | {r.get('platform')} |")
EOF
  done
  for bench in conv_backends train_step; do
    echo
    echo "## $bench"
    echo
    grep '^|' "$OUT/$bench.log" || echo "(no table: see $bench.log)"
  done
} >>"$SUMMARY"
echo "summary: $SUMMARY"
cat "$SUMMARY"
