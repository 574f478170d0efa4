"""The one stage-3 run the slow stage-3 tests share (not a test module itself).

``tests/test_stage3_grpo.py`` (the GRPO objective, checkpoints, validation metrics),
``tests/test_stage3_rollout_parity.py`` (rollouts answer like the model they roll out) and
``tests/test_multinode.py``'s two-node Ray test (workers on both nodes, the reward file found in
each node's working_dir) each used to start veRL, Ray and a vLLM-CPU server themselves, 5-10
minutes apiece on 2 shared cores. One run, the union of their settings, serves all three through
the session fixture ``stage3_colour_run`` (tests/conftest.py):

* the cluster: a head and a second raylet on 127.0.0.1 (tests/ray_cluster.py), each with one
  logical GPU; ``recipes/submit_stage3.sh --profile cpu`` submits the stage-3 recipe as a Ray
  job with ``--nnodes 2 --gpus-per-node 1``, so veRL places one FSDP/vLLM worker on each node.
* the model: the colour-world model (tests/colour_world.py), taught 200 steps on the 64 FI-8
  training prompts, then 60 steps (lr 1e-3) on those and one image per colour of each binary
  subtask (WebEmo-2, FI-2), whose prompts it otherwise answers out of format. It answers above chance, so sampled rewards differ inside a prompt's group (the GRPO test's
  signal), and it reads the image, so a blind rollout shows as lost accuracy (the parity test's).
* training: those 64 FI-8 prompts, 2 GRPO steps of 4 prompts x 4 responses, responses up to 96
  tokens, weight decay 0 (only gradients change weights), the rollout dump, a checkpoint with the
  HF model and a validation at step 2, ``EMOCALIBER_ROLLOUT_DIFF_WARN=1e-12`` (the warning prints
  every step); the file logger's path and that threshold reach the job through ``--env``.
* validation: the 32 held-out FI-8 colour images ``eval run`` also answers, plus one image of each
  colour under WebEmo-2, Abstract-8 and FI-2 (labels: the class, or its Mikels polarity), so
  every subtask and all three VECBench groups are validated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from emocaliber_rl.stage3_command import stage3_command

from . import colour_world as world
from . import ray_cluster
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


def steps_of(records: list[dict]) -> dict[int, dict]:
    """veRL's file-logger lines merged per step (a step is logged in several lines)."""
    merged: dict[int, dict] = {}
    for rec in records:
        merged.setdefault(rec["step"], {}).update(rec["data"])
    return merged


# the two teaching passes (run() says why the second): (parquet name, steps, lr, seed)
TEACHING = (("train", 200, 2e-3, 0), ("teach", 60, 1e-3, 1))
CACHE_VAR = "EMOCALIBER_TEST_CACHE"


def cache_root() -> Path | None:
    """Where taught models are kept between sessions: ``$EMOCALIBER_TEST_CACHE``, else
    ~/.cache/emocaliber-rl/tests; ``off`` keeps none (every session teaches)."""
    value = os.environ.get(CACHE_VAR, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path.home() / ".cache" / "emocaliber-rl" / "tests"


def teaching_key(tiny_model_dir: Path, parquets: dict[str, Path]) -> str:
    """A digest of everything the taught weights follow from: the starting model's files, what
    colour_world.teach reads of each parquet row (prompt, image bytes, label), the teaching code
    (tests/colour_world.py and emocaliber_rl/response_loss.py, the only project modules teach()
    runs) and settings, and the versions of Python and of the libraries teach() runs through
    (torch, transformers, tokenizers, Pillow, numpy). Paths and parquet metadata are left out, so
    the same inputs in another session's temp dir give the same key."""
    import hashlib
    import platform
    from importlib.metadata import version

    import pandas as pd

    from emocaliber_rl import response_loss

    h = hashlib.sha256()
    for f in sorted(p for p in tiny_model_dir.rglob("*") if p.is_file()):
        h.update(f.relative_to(tiny_model_dir).as_posix().encode() + b"\0" + f.read_bytes())
    for name, path in sorted(parquets.items()):
        h.update(name.encode())
        for row in pd.read_parquet(path).to_dict("records"):
            h.update(json.dumps([list(map(dict, row["prompt"])), row["reward_model"]["ground_truth"]]).encode())
            h.update(row["images"][0]["bytes"])
    for code in (world.__file__, response_loss.__file__):
        h.update(Path(code).read_bytes())
    libs = [version(d) for d in ("torch", "transformers", "tokenizers", "pillow", "numpy")]
    h.update(repr((TEACHING, platform.python_version(), libs)).encode())
    return h.hexdigest()[:16]


def _file_digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file() and f.name != DIGESTS}


DIGESTS = "files.sha256.json"  # the cached model's files as stored: a copy that differs is not used


def taught_model(tiny_model_dir: Path, train: Path, teach: Path, tmp: Path) -> Path:
    """The colour model taught in TEACHING's two passes, from the cache when the same inputs were
    taught before (~90 s of one core, about a tenth of this run; it is the test's scaffold, not what
    the tests check). A cached copy is used only when its files still have the digests stored with it;
    otherwise, and on a miss (a fresh clone, a changed input), the model is taught and stored. A new
    model replaces the cache's older ones; a cache that cannot be written is skipped, not an error."""
    import shutil

    parquets = {"train": train, "teach": teach}
    root = cache_root()
    cached = root / f"colour-model-{teaching_key(tiny_model_dir, parquets)}" if root else None
    if cached is not None and (cached / DIGESTS).is_file():
        copy = Path(shutil.copytree(cached, tmp / "colour_model"))
        if json.loads((copy / DIGESTS).read_text()) == _file_digests(copy):
            print(f"stage-3 test run: taught colour model from the cache {cached} ({CACHE_VAR}=off to teach)")
            return copy
        print(f"stage-3 test run: the cached model {cached} differs from its digests; teaching anew")
        shutil.rmtree(copy)
    model = tiny_model_dir
    for i, (name, steps, lr, seed) in enumerate(TEACHING):
        model = world.teach(model, parquets[name], tmp / f"colour_model{i}", steps=steps, lr=lr, seed=seed)
    if cached is not None:
        partial = cached.parent / f"{cached.name}.partial-{os.getpid()}"
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(model, partial)
            (partial / DIGESTS).write_text(json.dumps(_file_digests(partial)))
            for old in cached.parent.glob("colour-model-*"):
                if ".partial-" not in old.name:  # another session's copy in progress stays
                    shutil.rmtree(old, ignore_errors=True)
            partial.rename(cached)  # whole or absent: a killed session leaves only a .partial folder
        except OSError as exc:  # a read-only or full home: the run goes on with the model it taught
            print(f"stage-3 test run: not cached ({exc})")
            shutil.rmtree(partial, ignore_errors=True)
    return model


def submit_checks(cluster: dict, recipe_args: list[str], val: Path, tmp: Path) -> dict:
    """What the cluster answers before the stage-3 job (tests/test_ray_submit.py reads it): a
    submission with a wrong token; ``submit_stage3.sh --check`` on the job's own recipe arguments
    (with ``--submission-id``, and ``EMOCALIBER_LOSS_ROWS=0`` set on the submitting side, which must
    reach the check's workers); the job server's status of that check; and the check again with a
    ``--val`` no node has. The checks train nothing: one Ray task pinned to each node runs the
    recipe's dry run and fingerprints the paths (emocaliber_rl/cluster_check.py)."""
    import secrets
    import uuid

    res: dict = {"missing": tmp / "no_such_val.parquet", "id": f"emocaliber-check-{uuid.uuid4().hex[:8]}"}
    # a wrong token wins over the token file
    wrong = {**cluster["env"], "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    res["refused"] = subprocess.run([str(ray_cluster.ray_bin()), "job", "submit", "--address", cluster["address"],
                                     "--", "python", "-c", "print(1)"], env=wrong, check=False, capture_output=True,
                                    text=True, timeout=120)

    def check(args: list[str], name: str, *extra: str, expect_failure: bool = False) -> tuple[int, str]:
        env = {**cluster["env"], "EMOCALIBER_LOSS_ROWS": "0"}
        return ray_cluster.run_job(
            ["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--address", cluster["address"],
             "--profile", "cpu", "--python", sys.executable, *extra, "--check", "--", *args],
            {**cluster, "env": env}, tmp / name, timeout=900, cwd=REPO_ROOT, expect_failure=expect_failure)

    res["good"] = check(recipe_args, "check-good.log", "--submission-id", res["id"])
    # the job server's own record of the check (Ray's SDK, authenticated by the same token file)
    code = ("import sys; from ray.job_submission import JobSubmissionClient; "
            "print('STATUS', JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)")
    res["status"] = subprocess.run([sys.executable, "-c", code, cluster["address"], res["id"]], env=cluster["env"],
                                   check=False, capture_output=True, text=True, timeout=120)
    bad_args = [str(res["missing"]) if a == str(val) else a for a in recipe_args]
    assert bad_args != recipe_args, recipe_args
    res["bad"] = check(bad_args, "check-bad.log", expect_failure=True)
    return res


def run(tmp: Path, tiny_model_dir: Path) -> dict:
    """Teach the colour model, answer the FI-8 validation images with ``eval run`` (HF, greedy),
    then run the stage-3 recipe once as a Ray job on two nodes; returns what the tests read."""
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
    model = taught_model(tiny_model_dir, train, teach, tmp)
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

    job_env = [f"VERL_FILE_LOGGER_PATH={tmp / 'metrics.jsonl'}", "RAY_DEDUP_LOGS=0",
               # any disagreement at all prints the warning, so the parity test sees the hook fire
               "EMOCALIBER_ROLLOUT_DIFF_WARN=1e-12"]
    out = tmp / "ckpt"
    # the recipe's arguments as the one builder writes them (stage3_command), less its `bash
    # recipes/stage3_grpo.sh`: submit_stage3.sh runs that recipe as the Ray job's entrypoint
    recipe_args = stage3_command(
        model=model, train=train, val=val, out=out, steps=STEPS, experiment="stage3_cpu_test",
        nnodes=2, gpus_per_node=1,
        overrides=["trainer.logger=[console,file,tensorboard]",
                   f"trainer.rollout_data_dir={tmp / 'rollouts'}",
                   f"trainer.save_freq={STEPS}", f"trainer.test_freq={STEPS}",
                   "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]",
                   # any weight change must come from gradients, not from AdamW's decay
                   "actor_rollout_ref.actor.optim.weight_decay=0.0",
                   # the colour model's answers (~50 tokens) with room to spare
                   "data.max_response_length=96",
                   # two ranks: each holds 4 responses of a mini-batch (2 prompts x 4), under the profile's 8
                   "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                   "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
                   "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2"])[2:]
    # --profile cpu here too: it adds VERL_PLATFORM=cpu to the job's environment
    cmd = ["bash", str(REPO_ROOT / "recipes" / "submit_stage3.sh"), "--profile", "cpu", "--python", sys.executable,
           *[a for e in job_env for a in ("--env", e)], "--", *recipe_args]
    t0 = time.monotonic()
    with ray_cluster.two_node_cluster() as cluster:
        cluster_s = time.monotonic() - t0
        t0 = time.monotonic()
        submit = submit_checks(cluster, recipe_args, val, tmp)
        check_s = time.monotonic() - t0
        cmd[2:2] = ["--address", cluster["address"]]
        t0 = time.monotonic()
        rc, log = ray_cluster.run_job(cmd, cluster, tmp / "run.log", timeout=1500, cwd=REPO_ROOT)
        run_s = time.monotonic() - t0
        assert rc == 0, log[-6000:]
        # read while the cluster is up: the two-node test checks where veRL placed its workers
        nodes = ray_cluster.list_state("nodes", cluster["gcs"], cluster["env"])
        actors = ray_cluster.list_state("actors", cluster["gcs"], cluster["env"], "--limit", "10000", "--detail")
    survivors = ray_cluster.marked_pids(cluster["marker"])
    records = [json.loads(x) for x in (tmp / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps = steps_of(records)
    acc_eval = sum(p["pred"] == p["label"] for p in preds) / max(len(preds), 1)
    print(f"stage-3 test run: teach {teach_s:.1f} s, eval run {eval_s:.1f} s, two-node Ray cluster up "
          f"{cluster_s:.1f} s, submissions and checks {check_s:.1f} s, stage-3 job {run_s:.1f} s; "
          f"accuracy eval run {acc_eval:.3f}, rollouts {steps[0].get(f'val-aux/{world.TASK}/correct/mean@1')}; "
          f"step 1 training/rollout_probs_diff_max {steps.get(1, {}).get('training/rollout_probs_diff_max')}, "
          f"correct {steps.get(1, {}).get('reward_extra/correct/mean')}; log {tmp / 'run.log'}")
    return {"tmp": tmp, "initial": model, "log": log, "records": records, "steps": steps, "preds": preds,
            "ckpt": out, "tb": out / "tensorboard_log", "nodes": nodes, "actors": actors, "survivors": survivors,
            "submit": submit, "cluster_tmp": cluster["tmp"], "train": train, "val": val,
            "n_val": len(val_recs), "n_val_per_task": {t: sum(r.subtask == t for r in val_recs) for t in TASKS}}
