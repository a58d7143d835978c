#!/usr/bin/env bash
# Runs every full experiment of training/ one after another (about 2-3 hours on 2 CPU cores) and
# leaves each run's results.json and figures in runs/<name>/. Usage: training/run_experiments.sh [names...]
set -euo pipefail
cd "$(dirname "$0")/.."
TF=${TFCFLOW:-.venv/bin/tfcflow}
PY=${PYTHON:-.venv/bin/python}
all="gaussian_mixture mnist_sr_caflow mnist_sr_dual_glow mnist_sr_conditional_glow mnist_inpainting colorization photo_super_resolution mnist_class_conditional"
for name in ${@:-$all}; do
  echo "=== $name $(date +%T)"
  case $name in
    gaussian_mixture)
      $TF train training/gaussian_mixture/cinn.json --out runs/gaussian_mixture_cinn --set train.verbose=2
      $TF train training/gaussian_mixture/rcf.json --out runs/gaussian_mixture_rcf --set train.verbose=2
      $PY training/gaussian_mixture/report.py runs/gaussian_mixture_cinn runs/gaussian_mixture_rcf --out runs/gaussian_mixture ;;
    mnist_sr_caflow) $TF train training/mnist_super_resolution/caflow.json --out runs/mnist_sr_caflow ;;
    mnist_sr_dual_glow) $TF train training/mnist_super_resolution/dual_glow.json --out runs/mnist_sr_dual_glow ;;
    mnist_sr_conditional_glow) $TF train training/mnist_super_resolution/conditional_glow.json --out runs/mnist_sr_conditional_glow ;;
    mnist_inpainting) $TF train training/mnist_inpainting/caflow.json --out runs/mnist_inpainting_caflow ;;
    colorization) $TF train training/colorization/caflow.json --out runs/colorization_caflow ;;
    photo_super_resolution) $TF train training/photo_super_resolution/caflow.json --out runs/photo_sr_caflow ;;
    mnist_class_conditional) $PY training/mnist_class_conditional/train.py --out runs/mnist_class_conditional ;;
    real_photos)  # not in the default list: needs the photos (../shared/data/README.md, photos/) in $PHOTOS
      [ -d runs/data/real_photos ] || $TF data prepare-photos "${PHOTOS:?set PHOTOS to the fetched photo folder}" \
        runs/data/real_photos --validation 4 --seed 0
      for pair in sr:super_resolution colorization:colorization inpainting:inpainting; do
        run=runs/real_photos_${pair%%:*}; task=${pair#*:}
        crop=512; [ $task = super_resolution ] && crop=0
        $TF train training/real_photos/$task.json --out $run
        $PY training/real_photos/evaluate_photos.py $run --split validation --crop 384 --temperatures 0.3 0.5 0.7 0.9
        $PY training/real_photos/evaluate_photos.py $run --split test --crop $crop
      done ;;
    *) echo "unknown experiment $name"; exit 2 ;;
  esac
done
echo "=== done $(date +%T)"
