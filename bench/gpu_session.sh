#!/usr/bin/env bash
# The GPU checks of issue 16 in one go, as run on a lent GPU machine whose
# python3 holds PyTorch (layerlab from this tree through PYTHONPATH):
#   1. the GPU's name and PyTorch's version
#   2. bench/gpu_sync_audit.py: every host synchronisation of a training run, by site
#   3. the GPU tests (TEST_ARGS=tests for the whole suite on the GPU machine)
#   4. bench/seed_network.py --device cuda: the seed network's 1170 iterations
# Results go to $OUT (default bench/results/gpu).
set -u
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 150 python3 bench/gpu_sync_audit.py --epochs 3 2>&1 | tee "$OUT/sync_audit.txt"
timeout "${TEST_SECONDS:-200}" python3 -m pytest -q -p no:cacheprovider -n ${TEST_WORKERS:-4} \
    ${TEST_ARGS:-tests/test_gpu.py tests/test_cuda_graph.py} > "$OUT/pytest.txt" 2>&1
echo "pytest rc $?"; tail -30 "$OUT/pytest.txt"
timeout "${BENCH_SECONDS:-300}" python3 bench/seed_network.py --device cuda --no-memory \
    --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/seed_network.log"
