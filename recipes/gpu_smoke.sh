#!/usr/bin/env bash
# GPU smoke test: what a user's first GPU node runs (budget: 10 minutes on one 8-GPU node).
# 1. install check (driver vs torch's CUDA, CUDA visible, flash-attn -> profile gpu or gpu-sdpa);
# 2. the three stages on the tiny random Qwen2.5-VL with the GPU profile (demo data, a few steps);
# 3. one stage-3 step on a randomly initialised model with Qwen2.5-VL-7B-Instruct's configuration
#    (built from its config, no download) and the paper's shape (recipes/config/stage3_grpo.yaml:
#    prompts up to 4096 tokens with images at the official pixel bounds, responses up to 2048,
#    rollout n 8, 8 prompts per GPU), printing peak memory per GPU and the step time; sized to the
#    GPUs found (emocaliber_rl/memory_estimate.py, smoke_plan): as configured when it fits, with
#    FSDP offload when only that fits (and the host memory holds it), else skipped, saying why.
# --dry-run checks part 3's command on any machine (no GPU): stage3_grpo.sh --dry-run with its args.
# NOT YET RUN ON A GPU (no GPU was lent to the task that wrote it): see docs/gpu.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/gpus.sh
source "$HERE/lib/gpus.sh"
resolve_python "$REPO_ROOT"
# every step's log in the order it was written (stdout unbuffered like stderr): a warning lands
# after the config the dry run prints, not inside it, and a run that dies leaves its last lines
export PYTHONUNBUFFERED=1

usage() {
  cat <<USAGE
Usage: bash recipes/gpu_smoke.sh [--out DIR] [--skip-tiny] [--skip-7b]
       bash recipes/gpu_smoke.sh --dry-run [--gpus N] [--out DIR]

  --out DIR     work folder (default: runs/gpu_smoke); DIR/summary.txt gets the results and
                DIR/logs/ every command's output. The 7B step writes ~17 GB of random weights there.
  --skip-tiny   skip part 2 (the three stages on the tiny model).
  --skip-7b     skip part 3 (the stage-3 step with the 7B configuration). Part 3 sizes itself to
                the GPUs it finds: full fine-tuning with fp32 master weights needs ~16 bytes per
                parameter (~133 GB for the 7B) before activations and vLLM's share, so below the
                estimate's fit (8 x 80 GB fits; 4 x 80 GB fits) it offloads parameters, optimizer
                and reference model to host memory, or skips when even that does not fit.
                Its batch: 8 prompts per GPU (the paper's 64 on 8), 8 responses each, prompts with
                one 672x672 image (576 image tokens, the official maximum), data.max_prompt_length
                4096 and data.max_response_length 2048 as in recipes/config/stage3_grpo.yaml (a
                random model rarely stops early: responses run to 2048 tokens).
  --dry-run     no GPU needed: part 3 only, its model as a config.json (no weights), its data, its
                plan for --gpus N cards of 80 GiB, then recipes/stage3_grpo.sh --dry-run with the
                step's exact arguments (veRL's checks, paths, memory estimate); exit 0 when it holds.
  --gpus N      the GPU count --dry-run plans for (default 8).
  -h, --help    this help.
Environment read: PYTHON (default the repository's .venv), CUDA_VISIBLE_DEVICES (GPUs used).
USAGE
}

out="runs/gpu_smoke" tiny=1 big=1 dry=0 dry_gpus=8 gpus_given=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --gpus) dry_gpus="$2"; gpus_given=1; shift 2 ;;
    --skip-tiny) tiny=0; shift ;;
    --skip-7b) big=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
(( dry == 1 || gpus_given == 0 )) || { echo "gpu_smoke.sh: --gpus is for --dry-run; a run uses the GPUs it sees (CUDA_VISIBLE_DEVICES)" >&2; exit 2; }
[[ "$dry_gpus" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_smoke.sh: --gpus wants a positive integer, got '$dry_gpus'" >&2; exit 2; }
mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"
summary="$out/summary.txt"
: > "$summary"
say() { echo "[gpu_smoke] $*" | tee -a "$summary"; }

# Peak memory per GPU, sampled every second while this script runs (killed on exit).
: > "$out/memory.csv"
if (( dry == 0 )); then
  "nvidia-smi" --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits -lms 1000 \
    > "$out/memory.csv" 2>/dev/null &
  sampler=$!
  trap 'kill "$sampler" 2>/dev/null || true' EXIT
fi
peak_memory() {  # print "gpu i: peak MiB / total MiB" lines for the samples since line $1
  tail -n +"$1" "$out/memory.csv" | awk -F', *' '{ if ($2 > p[$1]) p[$1] = $2; t[$1] = $3 }
    END { for (i in p) printf "gpu %s: peak %d MiB of %d MiB\n", i, p[i], t[i] }' | sort -V
}
partial_ok() {  # partial_ok CMD...: exit 3 ("written, with rows left out": a filter's rejects) counts as done
  "$@" || { local rc=$?; (( rc == 3 )) || return "$rc"; }
}

timed() {  # timed NAME CMD...: run CMD with its output in logs/NAME.log, report wall time and memory
  local name="$1"; shift
  local start mark rc=0
  mark=$(( $(wc -l < "$out/memory.csv") + 1 ))
  start=$(date +%s)
  "$@" > "$out/logs/$name.log" 2>&1 || rc=$?
  say "$name: rc=$rc, $(( $(date +%s) - start )) s (log: logs/$name.log)"
  peak_memory "$mark" | sed 's/^/    /' | tee -a "$summary"
  local step
  step="$(grep -o 'timing_s/step:[0-9.]*' "$out/logs/$name.log" | tail -1 || true)"
  [[ -z "$step" ]] || say "    veRL $step"
  (( rc == 0 )) || { say "$name FAILED; last lines:"; tail -20 "$out/logs/$name.log" | tee -a "$summary"; exit 1; }
}

# ---- 1. install check ------------------------------------------------------------------------
if (( dry == 1 )); then
  # the checks part 3 runs without a GPU: the profile the GPU node would pick without flash-attn is
  # gpu-sdpa; the dry run of --profile gpu differs only in the attention implementation
  ngpu="$dry_gpus" profile=gpu-sdpa tiny=0 big=1
  say "dry run: part 3 only, planned for $ngpu GPU(s) of 80 GiB; profile: $profile"
else
  "$PYTHON" -m emocaliber_rl.cli gpu-check | tee -a "$summary"
  "$PYTHON" - <<'PY' | tee -a "$summary"
import torch, vllm, verl, transformers
assert torch.cuda.is_available(), "torch sees no CUDA device"
print(f"[gpu_smoke] torch {torch.__version__} vllm {vllm.__version__} verl {verl.__version__} "
      f"transformers {transformers.__version__}; {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}")
PY
  ngpu="$(count_visible_gpus)"
  if "$PYTHON" -c "import flash_attn" 2>/dev/null; then profile=gpu; else profile=gpu-sdpa; fi
  say "GPUs visible: $ngpu; profile: $profile"
  [[ "$ngpu" -ge 1 ]] || { say "no GPU visible"; exit 1; }
fi
common=("trainer.logger=[console]")

# ---- 2. the three stages on the tiny model ---------------------------------------------------
if (( tiny == 1 )); then
  # the demo's model, data and exports (CPU, about a minute), with the tiny model's pixel bounds
  timed data "$PYTHON" - "$out/demo" <<'PY'
import sys
from pathlib import Path
from emocaliber_rl.demo import Demo
from emocaliber_rl.pipeline_runner import run_pipeline
demo = Demo(Path(sys.argv[1]))
run_pipeline([s for s in demo.stages() if s.name in ("model", "data", "cot")], demo.out, resume=True,
             echo=print)
PY
  d="$out/demo/data" base="$out/demo/models/base" ck="$out/ckpt"
  timed stage1 bash "$HERE/stage1_sft.sh" --profile "$profile" --model "$base" --train "$d/stage1.parquet" \
    --out "$ck/stage1" --steps 4 "data.train_batch_size=$ngpu" data.micro_batch_size_per_gpu=1 \
    data.max_length=512 "${common[@]}"
  timed stage2_generate "$PYTHON" -m emocaliber_rl.cli stage2 generate --model "$ck/stage1/final_hf" \
    --prompts "$d/stage2_prompts.jsonl" --out "$out/gen.jsonl" --backend vllm --max-new-tokens 96 \
    --temperature 1.0 --processor-pixels --no-progress
  timed stage2_label partial_ok "$PYTHON" -m emocaliber_rl.cli stage2 label "$out/gen.jsonl" --out "$d/stage2.parquet" \
    --processor-pixels --no-plot --max-length 0
  timed stage2 bash "$HERE/stage2_sft.sh" --profile "$profile" --model "$ck/stage1/final_hf" \
    --train "$d/stage2.parquet" --out "$ck/stage2" --steps 2 "data.train_batch_size=$ngpu" \
    data.micro_batch_size_per_gpu=1 data.max_length=512 "${common[@]}"
  timed stage3 bash "$HERE/stage3_grpo.sh" --profile "$profile" --model "$ck/stage2/final_hf" \
    --train "$d/stage3_train.parquet" --val "$d/stage3_val.parquet" --out "$ck/stage3" --steps 1 \
    "data.train_batch_size=$ngpu" "actor_rollout_ref.actor.ppo_mini_batch_size=$ngpu" \
    actor_rollout_ref.rollout.n=2 data.max_prompt_length=1024 data.max_response_length=64 \
    trainer.val_before_train=False trainer.test_freq=-1 trainer.save_freq=1 "${common[@]}"
fi

# ---- 3. one stage-3 step with Qwen2.5-VL-7B's shapes ----------------------------------------
big_args=()
if (( big == 1 )); then
  # size the step to these GPUs: the smallest card, the host memory offload would use
  if (( dry == 1 )); then gpu_mib=81920  # the card the recipes' dry run assumes without a GPU
  else gpu_mib="$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | sort -n | head -1)"; fi
  host_kib="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
  plan_log="$(PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c 'import sys
from emocaliber_rl.memory_estimate import smoke_report
print("\n".join(smoke_report(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))))' \
                "$ngpu" "$gpu_mib" "$host_kib")"
  sed 's/^/    /' <<< "$plan_log" | tee -a "$summary"
  plan="$(tail -1 <<< "$plan_log")"
  case "$plan" in
    "plan: full") ;;
    "plan: offload")
      say "part 3 on $ngpu GPU(s): FSDP offload of parameters, optimizer and reference model (slower; not the 8-GPU setting)"
      big_args=(actor_rollout_ref.actor.fsdp_config.param_offload=True
                actor_rollout_ref.actor.fsdp_config.optimizer_offload=True
                actor_rollout_ref.ref.fsdp_config.param_offload=True) ;;
    *) say "part 3 skipped: the 7B step does not fit $ngpu GPU(s) of $gpu_mib MiB, even offloaded (see above)"
       big=0 ;;
  esac
fi
if (( big == 1 )); then
  big_dir="$out/models/qwen2.5-vl-7b-random"
  [[ -d "$out/demo/models/base" ]] || timed tiny_model "$PYTHON" -m emocaliber_rl.cli tiny-model "$out/demo/models/base"
  timed build_7b "$PYTHON" - "$out/demo/models/base" "$big_dir" "$dry" <<'PY'
# Qwen/Qwen2.5-VL-7B-Instruct's config.json (text 28 x 3584, GQA 28/4 heads, vocab 152064; vision
# 32 x 1280, full attention at blocks 7/15/23/31), random bf16 weights made on the GPU (the dry
# run writes the config only); the tiny model's tokenizer and processor, whose special-token ids
# the config takes.
import sys, torch
from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
tiny, out, dry = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
proc = AutoProcessor.from_pretrained(tiny)
ids = {t: proc.tokenizer.convert_tokens_to_ids(t) for t in
       ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
cfg = Qwen2_5_VLConfig(
    text_config=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                     rms_norm_eps=1e-6, tie_word_embeddings=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                     bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                     pad_token_id=ids["<|endoftext|>"]),
    vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31], in_channels=3),
    image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    tie_word_embeddings=False)
proc.save_pretrained(out)
if dry:
    cfg.save_pretrained(out)
    print("config only (dry run)")
    sys.exit(0)
torch.manual_seed(0)
with torch.device("cuda"):
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
print(f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")
model.save_pretrained(out)
PY
  grep -h "B parameters\|config only" "$out/logs/build_7b.log" | sed 's/^/    /' | tee -a "$summary"
  # the paper's prompts: 8 per GPU, each with one 672x672 image, which the official pixel bounds
  # (200704-451584) keep at 672x672: 451584 / 28^2 = 576 image tokens, the most a prompt gets
  d7="$out/data_7b"
  timed data_7b "$PYTHON" - "$d7" $(( 8 * ngpu )) "$out/demo/models/base" <<'PY'
import random, sys
from pathlib import Path
from PIL import Image, ImageDraw
from emocaliber_rl.data.exports import OFFICIAL_PIXEL_BOUNDS, export_rl_stage3
from emocaliber_rl.limits import RL_MAX_PROMPT_LENGTH
from emocaliber_rl.data.records import Record
from emocaliber_rl.taxonomy import get_subtask
out, n, tokenizer = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out.mkdir(parents=True, exist_ok=True)
tasks = ["FI-8", "WebEmo-2", "Abstract-8", "FI-2"]  # all three VECBench groups
records = []
for i in range(n):
    rng = random.Random(i)
    img = Image.new("RGB", (672, 672), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.randrange(448), rng.randrange(448)
        draw.ellipse((x, y, x + 224, y + 224), fill=tuple(rng.randrange(256) for _ in range(3)))
    img.save(out / f"img{i}.png")
    labels = get_subtask(tasks[i % 4]).labels
    records.append(Record.make(f"smoke7b-{i}", tasks[i % 4], out / f"img{i}.png", labels[i % len(labels)]))
# exact prompt lengths (the tokenizer is Qwen2.5-VL's): a prompt over 4096 would fail the step
for split, name, rows in (("train", "train", records), ("test", "val", records[:8])):
    res = export_rl_stage3(rows, out / f"{name}.parquet", split=split, pixel_bounds=OFFICIAL_PIXEL_BOUNDS,
                           max_length=RL_MAX_PROMPT_LENGTH, tokenizer=tokenizer)
    if res.rows != len(rows) or res.report.problems:
        sys.exit(f"{name}: {res.rows} of {len(rows)} rows written: {res.report.problems[:3]}")
print(f"{len(records)} train prompts, 8 val prompts: one 672x672 image each (576 image tokens), "
      f"every prompt within max_prompt_length {RL_MAX_PROMPT_LENGTH}")
PY
  grep -h "train prompts" "$out/logs/data_7b.log" | sed 's/^/    /' | tee -a "$summary"
  # the paper's shape from recipes/config/stage3_grpo.yaml (max_prompt_length 4096,
  # max_response_length 2048, rollout.n 8, 16384 tokens per micro-batch); the batch scales with the
  # GPUs: 8 prompts per GPU, two PPO updates per step (the paper's 64 and 32 on 8 GPUs)
  step=(bash "$HERE/stage3_grpo.sh" --profile "$profile" --model "$big_dir" --gpus-per-node "$ngpu"
        --train "$d7/train.parquet" --val "$d7/val.parquet" --out "$out/ckpt/stage3_7b" --steps 1
        "data.train_batch_size=$(( 8 * ngpu ))" "actor_rollout_ref.actor.ppo_mini_batch_size=$(( 4 * ngpu ))"
        trainer.val_before_train=False trainer.test_freq=-1 trainer.save_freq=-1 "${big_args[@]}" "${common[@]}")
  if (( dry == 1 )); then
    timed stage3_7b_dry_run "${step[@]}" --dry-run
    grep -h "per-GPU memory estimate\|peak\|veRL's own checks pass" "$out/logs/stage3_7b_dry_run.log" \
      | sed 's/^/    /' | tee -a "$summary"
  else
    timed stage3_7b "${step[@]}"
  fi
fi
say "done; summary: $summary"
