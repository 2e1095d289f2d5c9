#!/usr/bin/env bash
# Regenerates every committed artefact that depends on the float checkpoint, in dependency order:
#   1. the integer test models (W16A16, W8A16)        refdec/models/*.npz
#   2. the Kodak evaluation and its results page       results/
#      and the evaluation with the refining encoder     results/refined/
#   3. the cross-device, quality-ceiling and latent-refinement experiments
#      results/crossdevice.json, ceiling.json, refine.json (then the page again)
#   4. the conformance vectors                         vectors/
#
#   tools/regenerate.sh [CHECKPOINT]       (default models/float.pt; run from anywhere)
#
# Informative: a convenience for whoever retrains the model; each step is the committed command that
# the README lists. Independent steps run two at a time (this machine has two cores), with one
# thread each. Takes about four hours on two cores: 50 minutes for the models, the evaluation and the
# vectors (43 measured with the W16A16 search on 4 images instead of 8), about two hours for the
# evaluation with the refining encoder (measured: 1.5 minutes per image and rate point per shard),
# and about an hour for the experiments of step 3 (estimated from runs of each alone with two
# threads: the refinement 40 minutes, the ceiling about 15, the cross-device experiment about 10).
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:-models/float.pt}
KODAK=${KODAK:-../shared/data/kodak}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

log "integerising $CKPT"
python -m refcodec.integerise --checkpoint "$CKPT" --profile W16A16 --out refdec/models/refdec-test-w16a16.npz &
python -m refcodec.integerise --checkpoint "$CKPT" --profile W8A16 --out refdec/models/refdec-test-w8a16.npz &
wait -n && wait -n

MODELS=(--model refdec/models/refdec-test-w16a16.npz --model refdec/models/refdec-test-w8a16.npz)
log "evaluating on Kodak (two shards)"
for shard in 0 1; do
  python -m refcodec.evaluate --checkpoint "$CKPT" "${MODELS[@]}" --kodak "$KODAK" --torch-check all \
    --shard "$shard/2" --out results/ > "results/.evaluate.$shard.log" 2>&1 &
done
wait -n && wait -n
rm -f results/.evaluate.*.log

log "evaluating on Kodak with the refining encoder (two shards, W16A16)"
for shard in 0 1; do
  python -m refcodec.evaluate --checkpoint "$CKPT" --model refdec/models/refdec-test-w16a16.npz --kodak "$KODAK" \
    --refine 40 --torch-check first --shard "$shard/2" --out results/refined/ > "results/.refined.$shard.log" 2>&1 &
done
wait -n && wait -n
rm -f results/.refined.*.log
python -m refcodec.evaluate --checkpoint "$CKPT" --model refdec/models/refdec-test-w16a16.npz --kodak "$KODAK" \
  --refine 40 --out results/refined/ --report-only > /dev/null

log "cross-device, quality-ceiling and latent-refinement experiments"
( python -m refcodec.crossdevice --checkpoint "$CKPT" --kodak "$KODAK" --images 8 --crop 0 --out results/crossdevice.json \
  && python -m refcodec.ceiling --checkpoint "$CKPT" --kodak "$KODAK" --images 8 --crop 256 --steps 300 --out results/ceiling.json > /dev/null ) &
python -m refcodec.refine --checkpoint "$CKPT" --kodak "$KODAK" --images 4 --crop 0 --steps 100 --out results/refine.json > /dev/null &
wait -n && wait -n
python -m refcodec.evaluate --checkpoint "$CKPT" "${MODELS[@]}" --kodak "$KODAK" --out results/ --report-only > /dev/null

log "conformance vectors"
python -m refcodec.make_vectors --out vectors/ --checkpoint "$CKPT" --kodak "$KODAK" -q
log "done"
