#!/usr/bin/env bash
# Export job: turns finished training runs into TF Serving model folders under serving/models/
# (the names models.config lists). Usage: serving/export_models.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
TF=${TFCFLOW:-.venv/bin/tfcflow}
for name in mnist_sr_caflow gaussian_mixture_rcf; do
  if [ -d "$RUNS/$name/checkpoints" ]; then
    $TF export "$RUNS/$name" --base serving/models --name "$name"
  else
    echo "skip $name: no run in $RUNS/$name (train it with training/run_experiments.sh)"
  fi
done
