#!/usr/bin/env bash
# reslab on a CUDA machine, in one go: the test suite (its CUDA tests run instead of being
# skipped), the GPU benchmark (scripts/benchmark.py, ResNet-20 and ResNet-56 on CIFAR-shaped
# data) and the epoch time of the paper's recipe. Logs and JSON land in the out folder.
#
#   bash scripts/check_gpu.sh [out folder]     # TEST_SECONDS, BENCH_SECONDS, PAPER_EPOCHS tune it
#   STAGES=tests bash scripts/check_gpu.sh     # only some of: tests bench paper
set -uo pipefail
out=$(realpath -m "${1:-gpu_check}")
mkdir -p "$out"
stages=" ${STAGES:-tests bench paper} "
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline
# The paper's run takes 352 iterations an epoch; PAPER_EPOCHS of them time the recipe.
paper_epochs=${PAPER_EPOCHS:-6}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    nproc
} 2>&1 | tee "$out/machine.txt"

if [[ $stages == *" tests "* ]]; then
    # pytest-xdist spreads the suite over processes when it is installed (all share the GPU).
    # Each failure is written down the moment it happens, so a suite cut off by its time
    # limit still says what failed and why.
    workers=$($py -c "import xdist" 2>/dev/null && echo "-n ${TEST_WORKERS:-8}")
    plugin=$(mktemp -d)
    # Under xdist the controller sees every report too: only it writes, once per failure.
    printf '%s\n' 'import os' 'def pytest_runtest_logreport(report):' \
        "    if report.failed and 'PYTEST_XDIST_WORKER' not in os.environ:" \
        "        with open('$out/failures.txt', 'a') as f:" \
        "            f.write(f'=== {report.nodeid} ({report.when})\\n{report.longreprtext}\\n')" \
        >"$plugin/failures_now.py"
    PYTHONPATH="$plugin:$PYTHONPATH" timeout -k 10 "${TEST_SECONDS:-300}" $py -m pytest $workers \
        -v -p failures_now -p no:cacheprovider -o addopts="" 2>&1 | grep -v "PASSED\|Benchmark" \
        | tee "$out/tests.log" | tail -40
    pkill -f pytest 2>/dev/null  # xdist workers can outlive a controller stopped by timeout
    sleep 1
fi

if [[ $stages == *" bench "* ]]; then
    timeout -k 10 "${BENCH_SECONDS:-240}" $py scripts/benchmark.py --cases resnet20,resnet56 \
        --epochs 3 --repeats 2 --train-size "${BENCH_TRAIN_SIZE:-20000}" --workers 8 \
        --out "$out/bench.json" 2>&1 | tee "$out/bench.log" | tail -30
fi

if [[ $stages == *" paper "* ]]; then
    data=$(mktemp -d)
    $py -c "import sys; sys.path.insert(0, 'scripts'); from pathlib import Path; \
from benchmark import write_cifar_shaped; write_cifar_shaped(Path('$data'), 50000, 10000, 0)"
    for compile in false true; do
        timeout -k 10 "${PAPER_SECONDS:-120}" $py train.py experiment=resnet_cifar_paper depth=20 \
            dataset.root="$data" dataset.download=false logger=none trainer.progress=false \
            trainer.compile=$compile trainer.max_steps=$((352 * paper_epochs)) \
            hydra.run.dir="$data/paper_compile_$compile" 2>&1 | tee "$out/paper_compile_$compile.log" \
            | grep -v "^class"
    done
fi
