#!/usr/bin/env bash
# The issue-23 measurements on one NVIDIA GPU (BENCHMARKS.md "On one H100"): train steps, the loss, the pipeline.
#
#   bash benchmarks/gpu_b16.sh fetch      # on a machine with pip: the py3.12 wheels the GPU image lacks -> .whl/
#   bash benchmarks/gpu_b16.sh            # on the GPU machine (carry .whl/): tests, then the sections in order:
#                                         # steps (ViT-B/16 variants, a profile), loss and fused (goal 3: the jnp
#                                         # implementations, then the Pallas kernels by block), pipeline (grain
#                                         # workers); name sections to run only those: `... gpu_b16.sh fused pipeline`
#   TESTS=0 bash benchmarks/gpu_b16.sh decoder   # not in the default run: a decoder LM's training attention
#                                         # kernels (dense, xla, cudnn; remat off and on) at GPT-2 small's size, and a
#                                         # Llama-style one (GQA); TESTS=0 skips the kernel tests every call runs first
#
# Through the device tool: run(command="bash benchmarks/gpu_b16.sh fused", carry=[".whl"], timeout_s=600) first
# (the fused kernels have never run under Triton; up to 10 minutes), then `steps loss` and `pipeline` as time allows
# (steps, loss and pipeline took about 10-12 minutes together).
#
# Each variant prints the train_step.py table (examples/s, MFU; open_clip beside the baseline), the profile
# variant also where the step's device time goes by kind of op and by layer; all lands in $OUT (default /tmp/out).
# Most telling first: a call cut at its limit still returns the finished variants' files. `decoder` prints one
# table per model (benchmarks/train_step.py --decoder_preset: every variant compiled, then timed alternately, each
# against the first, dense without remat; a kernel that refuses the shape is a `fails:` row), decoder_*.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == fetch ]]; then
    # Not in the GPU image (KINDS.md lists its packages): the repo's config/data imports and open_clip.
    exec pip download --only-binary=:all: --python-version 3.12 --no-deps -d .whl \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
        ml-collections grain array-record portpicker open-clip-torch ftfy wcwidth tensorboardX
fi

OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | grep -v WARNING
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
if [[ "${TESTS:-1}" != 0 ]]; then
    # cuDNN's and Pallas' flash attention against NumPy at ViT-B/16's and CLIP's lengths, and a GPU trace read by
    # op_profile.py.
    python3 -m pytest -q -p no:warnings tests/test_attention_kernels.py tests/test_op_profile.py \
        -k "on_a_gpu or traced" 2>&1 | tail -3 | tee "$OUT/tests.txt"
    # The fused loss kernels compiled by Triton against the float64 references (on the CPU they are interpreted).
    python3 -m pytest -q -p no:warnings tests/test_fused_loss.py 2>&1 | tail -15 | tee "$OUT/tests_fused.txt"
fi

B16=(--config=configs/clip.py:size=B/16 --config.model.dtype=bfloat16 --config.batch_size=256 --steps=10 --repeats=2)
variant() {  # name, then train_step.py flags
    local name=$1
    shift
    echo "== $name: $*"
    timeout 240 python3 benchmarks/train_step.py "${B16[@]}" "$@" 2>&1 | grep -v '^[WI][0-9]' | tee "$OUT/$name.txt"
}
steps() {  # issue 23 goals 1 and 2: ViT-B/16 train steps, and where their device time goes
    local FAST=(--config.model.attention=cudnn --config.model.layer_norm_dtype=bfloat16 --open_clip=false)
    variant dense
    variant cudnn_bf16_norms "${FAST[@]}"
    variant cudnn_bf16_norms_scan "${FAST[@]}" --config.model.scan_layers=true  # what scanned towers cost per step
    variant xla_bf16_norms --config.model.attention=xla --config.model.layer_norm_dtype=bfloat16 --open_clip=false
    variant pallas_bf16_norms --config.model.attention=pallas --config.model.layer_norm_dtype=bfloat16 --open_clip=false
    # The profile turns XLA:GPU's command buffers off (each kernel then names its op), so its step time is its own.
    variant cudnn_bf16_norms_profile "${FAST[@]}" --profile_dir=/tmp/profile_cudnn
    variant cudnn_bf16_norms_b512 "${FAST[@]}" --config.batch_size=512
}
LOSS=(python3 benchmarks/contrastive_loss.py --skip_memory_table --execute_limit_gib=60 --matmul_dtypes=float32,bfloat16)
loss() {  # goal 3: the contrastive loss with float32 (TF32) and bfloat16 matmul operands; device peak memory
    timeout 150 "${LOSS[@]}" --implementations=dense,tiled --tile_size=4096 --execute=65536 --repeats=3 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/loss_65536.txt"
    timeout 200 "${LOSS[@]}" --implementations=tiled --tile_size=8192 --execute=262144,1048576 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/loss_1m.txt"
    timeout 120 "${LOSS[@]}" --implementations=dense,tiled --tile_size=4096 --accuracy=16384 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/loss_accuracy.txt"
}
fused() {  # goal 3: the Pallas kernels (losses/fused.py) by block size against tiled, then at 1M and against float64
    # `fused` is the default block, 64; at d = 512 on sm_90 block 128 spills registers and 32 underuses Hopper's
    # 64-row warpgroup matmuls (benchmarks/triton_resources.py): the timings say which costs more.
    timeout 200 "${LOSS[@]}" --implementations=tiled,fused@32,fused,fused@128 --tile_size=4096 --execute=65536 \
        --repeats=3 2>&1 | grep -v '^[WI][0-9]' | tee "$OUT/fused_65536.txt"
    timeout 100 "${LOSS[@]}" --kind=sigmoid --implementations=tiled,fused --tile_size=4096 --execute=65536 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/fused_sigmoid_65536.txt"
    timeout 200 "${LOSS[@]}" --implementations=fused --execute=262144,1048576 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/fused_1m.txt"
    timeout 100 "${LOSS[@]}" --implementations=tiled,fused --tile_size=4096 --accuracy=16384 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/fused_accuracy.txt"
}
pipeline() {  # goal 4: the quick start's pipeline and JPEG shards at 256 px by grain worker count
    timeout 150 python3 benchmarks/train_pipeline.py --config=configs/laclip.py --workers=0,1,2,4,8,16 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/pipeline_shapes.txt"
    timeout 150 python3 benchmarks/input_pipeline.py --side=256 --workers=1,2,4,8,16 2>&1 | tee "$OUT/pipeline_jpeg.txt"
    # The quick start itself, inline and with 4 workers: steps/s without evals and compilation, and the data-wait
    # share of each 50 steps (goal 4: >= 300 steps/s, or the device busy >= 90% of the time).
    for workers in 0 4; do
        timeout 150 python3 main.py --config=configs/laclip.py --workdir="/tmp/quick$workers" --config.total_steps=600 \
            --config.data.worker_count=$workers 2>&1 | grep -E 'steps/s|zero-shot' | tee "$OUT/quick_start_workers$workers.txt"
    done
}
DECODER=(python3 benchmarks/train_step.py --config=configs/lm.py --steps=10 --repeats=2)
decoder() {  # a decoder LM's training steps, batch 32 x 1,024 tokens, bf16: 6 variants, then 3 (GQA, SwiGLU, RoPE)
    timeout 300 "${DECODER[@]}" --decoder_preset=gpt2_small --attention_variants=dense,xla,cudnn \
        --remat_variants=false,true 2>&1 | grep -v '^[WI][0-9]' | tee "$OUT/decoder_gpt2.txt"
    timeout 180 "${DECODER[@]}" --decoder_preset=llama_small --attention_variants=dense,xla,cudnn 2>&1 \
        | grep -v '^[WI][0-9]' | tee "$OUT/decoder_llama.txt"
}
for section in "${@:-steps loss fused pipeline}"; do
    for name in $section; do
        "$name"
    done
done
