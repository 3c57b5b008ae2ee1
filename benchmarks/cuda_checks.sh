#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one short run (most important first; each step has a time cap). The
# default run fits a 15-minute GPU lease (about 9 minutes of commands); FULL=1 adds the steps marked (full).
#   1. the CUDA-only tests (no host-device sync in an epoch, fp16/bf16, compile, with_compile(mode='reduce-overhead')
#      in CUDA graphs, accumulation, pinned prefetch, GPU checkpoints, two ranks on a GPU under torchrun);
#   2. the overhead benchmark on the GPU (mlp, mlp with the progress bar, cnn; (full) the raw-vs-raw control), and
#      Trial.with_compile(mode='reduce-overhead') against the eager and the hand-compiled raw loop;
#   3. (full) the mixed-precision example on the GPU;
#   4. scaling out on NCCL: samples/s of Trial and a hand-written DDP loop (benchmarks/scaling.py) on 1
#      process, and on 2 and 4 when there are as many GPUs; with 2 or more GPUs also FSDP2 sharded
#      checkpoints written in the background by 2 GPU processes, continued on 1 (tests/distributed/scale_script.py);
#   5. (full) the whole test suite.
# Usage: bash benchmarks/cuda_checks.sh [OUTPUT_FOLDER]   (run from the repository root; needs torch with CUDA)
set -u
full=${FULL:-0}
out=${1:-cuda-checks}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
started=$SECONDS
step() { echo; echo "=== $1 (at ${SECONDS}s)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$python" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"

step "CUDA-only tests"
timeout 240 "$python" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_no_sync_cuda.py \
    tests/test_prefetch.py tests/test_summary.py "tests/metrics/test_metrics.py::test_built_in_metrics_never_sync_on_cuda" \
    tests/callbacks/test_mixup.py tests/callbacks/test_early_stopping.py \
    "tests/test_misuse.py::test_model_on_cuda_with_batches_on_cpu_suggests_trial_to" \
    "tests/distributed/test_torchrun.py::test_two_processes_on_a_gpu_match_one_process_on_the_cpu" \
    2>&1 | tee "$out/cuda_tests.log"

step "overhead benchmark on the GPU"
workloads=("--workload mlp" "--workload mlp --progress" "--workload cnn")
[ "$full" = 1 ] && workloads+=("--workload mlp --control")
for workload in "${workloads[@]}"; do
    # shellcheck disable=SC2086
    timeout 75 "$python" benchmarks/overhead.py --device cuda --pairs 11 $workload 2>&1 | tee -a "$out/benchmark.log"
done
timeout 120 "$python" benchmarks/overhead.py --device cuda --pairs 5 --compile reduce-overhead 2>&1 \
    | tee -a "$out/benchmark.log"

if [ "$full" = 1 ]; then
    step "mixed-precision example on the GPU"
    timeout 150 "$python" examples/mixed_precision.py --device cuda --epochs 4 --out "$out/mixed_precision" 2>&1 \
        | tee "$out/mixed_precision.log"
fi

step "scaling out on NCCL"
gpus=$(nvidia-smi -L | wc -l)
processes=(1)
[ "$gpus" -ge 2 ] && processes+=(2)
[ "$gpus" -ge 4 ] && processes+=(4)
timeout $(( ${#processes[@]} * 90 )) "$python" benchmarks/scaling.py --device cuda --pairs 3 --processes "${processes[@]}" 2>&1 \
    | tee "$out/scaling.log"
if [ "$gpus" -ge 2 ]; then
    scale=$(cd "$out" && pwd)
    run_scale() { timeout 300 "$python" -m torch.distributed.run --standalone --nproc-per-node="$1" \
        tests/distributed/scale_script.py --device cuda --out "$scale/scale$1" "${@:2}" >"$scale/scale$1.log" 2>&1; }
    mkdir -p "$scale/scale1" "$scale/scale2" "$scale/scale_reference"
    run_scale 2 --write "$scale/scale_checkpoint" && run_scale 1 --load "$scale/scale_checkpoint"
    (cd tests/distributed && "$python" -c '
import os, sys, torch, trial_script
out = sys.argv[1]
reference = os.path.join(out, "scale_reference")
trial_script.main(["--out", reference, "--batch-size", "12", "--train-size", "36", "--shuffle"])
expected = torch.load(os.path.join(reference, "weights.pt"))
for name in ("scale2/parity/weights.pt", "scale2/continued2.pt", "scale1/continued1.pt"):
    weights = torch.load(os.path.join(out, name), map_location="cpu")
    weights = weights.get("model", weights)
    difference = max((weights[key] - expected[key]).abs().max().item() for key in expected)
    print(f"{name}: max |dw| against one CPU process {difference:.2e}", "ok" if difference < 1e-4 else "TOO LARGE")
' "$scale") 2>&1 | tee "$out/scale_checks.log"
else
    echo "sharded checkpoints on GPUs: skipped, $gpus GPU(s) (FSDP with NCCL needs one GPU per process)"
fi

if [ "$full" = 1 ]; then
    step "whole test suite"
    parallel=()
    "$python" -c "import xdist" 2>/dev/null && parallel=(-n 8)  # pytest-xdist, where installed
    timeout "${SUITE_SECONDS:-180}" "$python" -m pytest -q -p no:cacheprovider -rfE "${parallel[@]}" 2>&1 \
        | grep -v "^\.\|PytestBenchmark\|warner" | tee "$out/suite.log" | tail -40
fi

step "done after $((SECONDS - started))s"
grep -h "passed\|failed\|error" "$out/cuda_tests.log" | tail -3
grep -h "median\|ratio\|workload=" "$out/benchmark.log"
cat "$out/scaling.log" "$out/scale_checks.log" 2>/dev/null
