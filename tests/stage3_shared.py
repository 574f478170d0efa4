"""The one stage-3 recipe run the slow stage-3 test modules share (not a test module itself).

``tests/test_stage3_grpo.py`` (the GRPO objective, checkpoints, validation metrics) and
``tests/test_stage3_rollout_parity.py`` (rollouts answer like the model they roll out) each used to
start ``recipes/stage3_grpo.sh --profile cpu`` themselves: veRL, Ray and a vLLM-CPU server, ~5-10
minutes apiece on 2 shared cores. One run, the union of their settings, serves both through the
session fixture ``stage3_colour_run`` (tests/conftest.py):

* the model: the colour-world model (tests/colour_world.py), taught 200 steps on the 64 FI-8
  training prompts, then 60 steps (lr 1e-3) on those and one image per colour of each binary
  subtask (WebEmo-2, FI-2), whose prompts it otherwise answers out of format. It answers above chance, so sampled rewards differ inside a prompt's group (the GRPO test's
  signal), and it reads the image, so a blind rollout shows as lost accuracy (the parity test's).
* training: those 64 FI-8 prompts, 2 GRPO steps of 4 prompts x 4 responses, responses up to 96
  tokens, weight decay 0 (only gradients change weights), the rollout dump, a checkpoint with the
  HF model and a validation at step 2, ``EMOCALIBER_ROLLOUT_DIFF_WARN=1e-12`` (the warning prints
  every step).
* validation: the 32 held-out FI-8 colour images ``eval run`` also answers, plus one image of each
  colour under WebEmo-2, Abstract-8 and FI-2 (labels: the class, or its Mikels polarity), so
  every subtask and all three VECBench groups are validated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from emocaliber_rl.stage3_command import stage3_command

from . import colour_world as world
from .conftest import REPO_ROOT

PER_CLASS_TRAIN = 16
PER_CLASS_VAL = 8
STEPS = 2
N = 4  # responses per prompt in the CPU profile
PROMPTS_PER_STEP = 4  # data.train_batch_size of the CPU profile
# the subtasks validated besides FI-8 (one per VECBench group not covered by FI-8), one image per colour
OTHER_TASKS = ("WebEmo-2", "Abstract-8", "FI-2")
BINARY_TASKS = ("WebEmo-2", "FI-2")  # the ID VSA group: labels positive/negative
TASKS = (world.TASK, *OTHER_TASKS)


def kill_marked(marker: str) -> None:
    """SIGKILL every process started by this run (its environment carries the marker)."""
    needle = f"EMOCALIBER_TEST_RUN={marker}".encode()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            if needle in (proc_dir / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc_dir.name), signal.SIGKILL)
        except (OSError, PermissionError):
            continue


def steps_of(records: list[dict]) -> dict[int, dict]:
    """veRL's file-logger lines merged per step (a step is logged in several lines)."""
    merged: dict[int, dict] = {}
    for rec in records:
        merged.setdefault(rec["step"], {}).update(rec["data"])
    return merged


def run(tmp: Path, tiny_model_dir: Path) -> dict:
    """Teach the colour model, answer the FI-8 validation images with ``eval run`` (HF, greedy),
    then run the stage-3 recipe once; returns what the tests read."""
    from emocaliber_rl.data.exports import export_eval_manifest, export_rl_stage3

    train_recs = world.records(tmp / "img", PER_CLASS_TRAIN, seed=0, split="train")
    val_fi8 = world.records(tmp / "img", PER_CLASS_VAL, seed=1, split="test")
    val_other = [r for i, task in enumerate(OTHER_TASKS)
                 for r in world.records(tmp / "img", 1, seed=2 + i, split="test", task=task)]
    val_recs = val_fi8 + val_other
    # a short second pass on the binary tasks' prompts (tests/colour_world.py's teaching alone saw
    # only FI-8 prompts): without it the model broke the format on them (`<element>` where
    # `<human>` belongs; 0 of 4 each, greedy). Mixed into the first pass instead (8 of each other
    # subtask, or 4 of each binary one), they cost the colour reading: FI-8 accuracy 0.5 and 0.84
    # after 200 steps, against 1.0 for 200 steps on FI-8 then 30 of this pass (measured with eval
    # run). 60, not 30: after 30 the GRPO step-2 rollouts (temperature 1) were well-formed only 6
    # of 16 times (12 of 16 at step 1), under the GRPO test's "format > 0.5".
    teach_recs = train_recs + [r for i, task in enumerate(BINARY_TASKS)
                               for r in world.records(tmp / "img", 1, seed=10 + i, split="train", task=task)]
    # the tiny model's processor bounds (4 image tokens), not the release's: --processor-pixels
    train = export_rl_stage3(train_recs, tmp / "train.parquet", pixel_bounds=None).path
    teach = export_rl_stage3(teach_recs, tmp / "teach.parquet", pixel_bounds=None).path
    val = export_rl_stage3(val_recs, tmp / "val.parquet", split="test", pixel_bounds=None).path
    manifest = export_eval_manifest(val_fi8, tmp / "val.eval.jsonl").path
    t0 = time.monotonic()
    model = world.teach(tiny_model_dir, train, tmp / "colour_fi8")
    model = world.teach(model, teach, tmp / "colour_model", steps=60, lr=1e-3, seed=1)
    teach_s = time.monotonic() - t0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.monotonic()
    ev = subprocess.run([sys.executable, "-m", "emocaliber_rl.cli", "eval", "run", "--model", str(model),
                         "--backend", "hf", "--greedy", "--manifest", str(manifest), "--out", str(tmp / "pred.jsonl"),
                         "--max-new-tokens", "96", "--no-progress", "--processor-pixels"],
                        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ev.returncode == 0, ev.stderr[-4000:]
    eval_s = time.monotonic() - t0
    preds = [json.loads(x) for x in (tmp / "pred.jsonl").read_text().splitlines() if x.strip()]

    marker = uuid.uuid4().hex
    token = tmp / "ray_auth_token"  # keeps Ray from writing ~/.ray/auth_token for its local cluster
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    env.update({"EMOCALIBER_TEST_RUN": marker, "RAY_AUTH_TOKEN_PATH": str(token),
                "VERL_FILE_LOGGER_PATH": str(tmp / "metrics.jsonl"), "RAY_DEDUP_LOGS": "0",
                "TENSORBOARD_DIR": str(tmp / "tb"),
                # any disagreement at all prints the warning, so the parity test sees the hook fire
                "EMOCALIBER_ROLLOUT_DIFF_WARN": "1e-12"})
    env.pop("RAY_ADDRESS", None)
    cmd = stage3_command(
        model=model, train=train, val=val, out=tmp / "ckpt", steps=STEPS, experiment="stage3_cpu_test",
        overrides=["trainer.logger=[console,file,tensorboard]",
                   f"trainer.rollout_data_dir={tmp / 'rollouts'}",
                   f"trainer.save_freq={STEPS}", f"trainer.test_freq={STEPS}",
                   "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]",
                   # any weight change must come from gradients, not from AdamW's decay
                   "actor_rollout_ref.actor.optim.weight_decay=0.0",
                   # the colour model's answers (~50 tokens) with room to spare
                   "data.max_response_length=96"])
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=tmp, env=env, check=False, capture_output=True, text=True, timeout=900)
    finally:
        kill_marked(marker)
    run_s = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (tmp / "run.log").write_text(log)
    assert proc.returncode == 0, log[-6000:]
    records = [json.loads(x) for x in (tmp / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = steps_of(records)
    acc_eval = sum(p["pred"] == p["label"] for p in preds) / max(len(preds), 1)
    print(f"stage-3 test run: teach {teach_s:.1f} s, eval run {eval_s:.1f} s, recipe {run_s:.1f} s; "
          f"accuracy eval run {acc_eval:.3f}, rollouts {steps[0].get(f'val-aux/{world.TASK}/correct/mean@1')}; "
          f"step 1 training/rollout_probs_diff_max {steps.get(1, {}).get('training/rollout_probs_diff_max')}, "
          f"correct {steps.get(1, {}).get('reward_extra/correct/mean')}; log {tmp / 'run.log'}")
    return {"tmp": tmp, "initial": model, "log": log, "records": records, "steps": steps, "preds": preds,
            "n_val": len(val_recs), "n_val_per_task": {t: sum(r.subtask == t for r in val_recs) for t in TASKS}}
