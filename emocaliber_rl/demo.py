"""`emocaliber demo`: the whole three-stage pipeline on a tiny model, on CPU, in one command.

With nothing beyond the install it: builds the tiny Qwen2.5-VL (Qwen's real tokenizer, random
weights); draws the known-answer world (``emocaliber_rl.world``: every image has a known label
posterior) in each raw dataset's published layout and builds VECBench manifests from it (every
subtask of the test split represented); synthesizes and judges VEC-CoT with `emocaliber cot
synthesize` / `cot judge` over the OpenAI-compatible API against the world's teacher on 127.0.0.1
(it reads each image's pixels and states the evidence: ``emocaliber_rl.world.teacher``) and
splits it 6:3:1; trains stage 1 on veRL's
SFT trainer; generates with vLLM (its CPU build), labels with Eq. 2 and trains the
confidence-only stage 2; runs stage 3 on veRL's GRPO trainer with vLLM rollouts for a few steps;
evaluates the scaffold, cold-start and final models on the test split (vLLM's CPU build by
default, HF transformers with ``--eval-backend hf``) beside the world's Bayes oracle, and writes
the report with its plots and an index, ``OUT/README.md``.

Every step is the same command a user runs (`emocaliber ...`, `recipes/*.sh`); the demo only
chooses tiny sizes and a high learning rate. The oracle row shows the best any model can do on
these images: the distance to it is what each stage has (or has not yet) learned.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from emocaliber_rl.pipeline_runner import Stage, StageContext, StageFailed

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "recipes"
# The tiny model's processor has its own small pixel bounds (a few image tokens per image, what
# its CPU training relies on): the demo's exports and inference keep them instead of the
# official release's 200704..451584 that the commands apply by default.
TINY_PIXELS = ("--processor-pixels",)
# glibc hands every freed block above its mmap threshold back to the kernel, so each training or
# decoding step's logits over Qwen's 151,936 words are page-faulted in afresh. Kept in the heap
# (no mmap for big blocks, no trimming), the demo's stage-1 recipe ran in 0.913 of the time (paired
# A/B; docs/demo-world.md, "Where the minutes go") with the same cold-start figures; every stage's
# processes inherit the variables. The demo peaked at 11.8 of 23 GiB in use with them; the test
# suite, two workers of Ray and vLLM at once, does not set them. A value the user has set wins.
KEPT_HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
# Run two at a time (`--parallel 2`), the scaffold's and the cold-start's evaluations run beside
# stages 2 and 3, which leave a core idle for much of their time. They get one torch thread (a
# second would spin at its barriers while the training stage holds the other core:
# benchmarks/bench_contended_threads.py) and a lower priority, `nice -n 10`, so that they fill the
# idle time rather than slow the stage on the demo's critical path. One thread gives the same
# greedy answers; alone, `eval run` of the scaffold took 117 s with it against 92 s with two
# (docs/demo-world.md, "Where the minutes go"). A value the user has set wins.
BESIDE_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
BESIDE_NICE = 10
# the evaluated runs, each a folder of eval/ and a column of the report, in the report's order
RUNS = ("oracle", "scaffold", "cold-start", "EmoCaliber")

@dataclass(frozen=True)
class DemoSizes:
    """Every size and rate the demo chooses, in one place (docs/demo-world.md says how they were
    measured). Images per fine label of each raw dataset; ``test_size`` test images per subtask."""

    per_label: tuple[tuple[str, int], ...] = (("FI", 60), ("EmoSet", 40), ("WebEmo", 12), ("Abstract", 4),
                                              ("ArtPhoto", 4), ("UnbiasedEmo", 10))
    test_size: int = 50
    text_layers: int = 4
    # at 150 steps (any rate 1e-3..5e-3) the answer is one constant label per subtask; the image
    # starts to count between 150 and 300 at 2e-3 (examples/stage1_learnability_probe.py)
    stage1_steps: int = 300
    stage1_batch: int = 8
    stage1_lr: float = 2e-3
    # 80 steps left "0.0.99"-style confidences on 35% of one run's test answers (the digits are
    # learnt last); 120 on the same data and scaffold parse on 99.3% (docs/demo-world.md)
    stage2_steps: int = 120
    # the scaffold's stage-2 answers are greedy, as the evaluation's are: the binned target is the
    # accuracy of the answers stage 2 trains on, and sampled answers (temperature 0.7) were right
    # less often than greedy ones (FI-8 / EmoSet-8 targets 0.41, greedy test accuracy 0.60), so the
    # cold-start said 0.41 where it was right 60% of the time. Greedy decoding on vLLM-CPU also
    # skips the sampler's pass over the vocabulary: ~8 answers a second against ~1.3
    # (docs/demo-world.md, "Stage 2's target")
    stage2_greedy: bool = True
    stage2_batch: int = 8
    stage2_lr: float = 2e-3
    # stage 2 also trains the scaffold's own response (include_response, not Eq. 3): without it the
    # tiny model's confidence-only SFT turns every answer into confidence fragments
    stage2_anchor: bool = True
    # Eq. 2's p: the paper's mean over the response ("mean") or the first answer token's
    # probability ("answer", the evaluation's Ans): the teacher's evidence CoT leaves the decision
    # to the answer token, so its probability is the scaffold's own uncertainty. Measured on one
    # scaffold, the cold-start's ID VER / VSA ECE: 0.231 / 0.050 with it, 0.641 / 0.327 with the
    # mean (docs/demo-world.md, "Evidence CoTs, stage 2's p and anchor")
    stage2_p_source: str = "answer"
    # the target: the paper's Eq. 2 ("eq2") or this project's "binned" (each bin's accuracy among
    # the scaffold's answers of one subtask, bins of `stage2_bin_rows` in order of p). Eq. 2 splits
    # on the sampled answer's correctness, which the tiny scaffold cannot foresee, so greedy decoding
    # wrote one value for 87% of ID VER answers. More rows than any group has: one bin per group,
    # its accuracy. Measured on one scaffold (docs/demo-world.md, "Stage 2's target"): ID VER ECE
    # 0.231 -> 0.100, pooled AUC 0.552 -> 0.860; bins of 25 by p within a subtask taught nothing
    # within it (AUC within 0.50) and lost pooled AUC (0.621)
    stage2_target: str = "binned"
    stage2_bin_rows: int = 1000
    # which rows share a bin (`stage2 label --bin-by`): "answer", the rows of one prompt that
    # answered the same label, shrunk toward the prompt's accuracy by `stage2_prior_rows`. The
    # confidence follows the answer, so the cold-start can look up that answer's precision. Same
    # scaffold, one bin per subtask -> per answer: ID VER AUC within a subtask 0.50 -> 0.78, Brier
    # 0.122 -> 0.111, 2 -> 4 values; ID VSA AUC 0.50 -> 0.46 (FI-2 and WebEmo-2 share a prompt
    # and stage 2 sees 57 FI-2 rows to 15 WebEmo-2; docs/demo-world.md, "Stage 2's target")
    stage2_bin_by: str = "answer"
    stage2_prior_rows: float = 2.0
    # keep the <answer> content out of the anchor (paper 4.7: stage 2 leaves the tokens that decide
    # the emotion alone)? Measured on the tiny model: the answers are forgotten (ID VER accuracy
    # 29.5% -> 0.5%, the answer tag filled with CoT words), so the anchor keeps them
    # (docs/demo-world.md, "Evidence CoTs, stage 2's p and anchor")
    stage2_exclude_answer: bool = False
    # the calibration study's settings (emocaliber_rl/study/calibration.py: lr 1e-4, rollout
    # temperature 0.7, 8 prompts x 4 rollouts, KL 0.01): at the recipe's lr 1e-6 the weights
    # moved by ~4e-6 and no answer changed. Only 2 steps fit the demo's minutes: the study runs
    # the same settings for 40 (docs/calibration-study.md)
    stage3_steps: int = 2
    # veRL's validation rollouts before stage 3 (the rollout-parity section) answer this many test
    # images per subtask: ~0.2 s an image, ~80 s for all 414 of the split, which `eval run` scores
    # in full anyway
    parity_per_task: int = 16


def _write_parity_manifest(test_manifest: Path, out: Path, per_task: int) -> int:
    """``per_task`` test records of each subtask, evenly spaced in manifest order (which runs
    label by label, so every label is drawn): the images both veRL's validation rollouts and
    `eval run` answer in the rollout-parity section."""
    from emocaliber_rl.data.records import read_manifest, write_manifest

    by_task: dict[str, list] = {}
    for rec in read_manifest(test_manifest):
        by_task.setdefault(rec.subtask, []).append(rec)
    kept = []
    for recs in by_task.values():
        k = min(per_task, len(recs))
        kept += [recs[i * len(recs) // k] for i in range(k)]
    write_manifest(out, kept)
    return len(kept)


class Demo:
    """The demo's stages; sizes chosen so the whole run fits in minutes on 2 CPU cores."""

    def __init__(self, out: Path, *, seed: int = 0, eval_backend: str = "vllm", sizes: DemoSizes | None = None,
                 parallel: int = 2) -> None:
        self.out = out
        self.parallel = parallel
        self.sizes = sizes or DemoSizes()
        self.seed = seed
        self.eval_backend = eval_backend
        self.base = out / "models" / "base"
        self.raw = out / "raw"
        self.bench = out / "bench"
        self.cot = out / "cot"
        self.data = out / "data"
        self.ckpt = out / "checkpoints"
        self.eval = out / "eval"
        self.report = out / "report"
        self.scenes = out / "world" / "scenes.jsonl"
        self.parity_manifest = self.data / "test.parity.jsonl"

    def stages(self) -> list[Stage]:
        """The stages in an order they can run in; ``after`` names what each reads. Run two at once
        (``emocaliber demo``'s default), each checkpoint is evaluated while the next stage trains
        on it, the oracle while stage 1 trains, and the data and CoTs are drawn while the model is built."""
        beside = self.parallel > 1  # stage 2 or 3 runs meanwhile
        return [
            Stage("model", "build the tiny random Qwen2.5-VL", self.build_model),
            Stage("data", "draw raw datasets and build VECBench manifests", self.build_data, after=()),
            Stage("cot", "VEC-CoT from the world's teacher (cot synthesize/judge over HTTP), 6:3:1 split, exports",
                  self.build_cot),
            Stage("stage1", "structured-CoT SFT on veRL's SFT trainer", self.stage1, after=("model", "cot")),
            Stage("eval-oracle", "the world's Bayes oracle on the test split, scored", self.eval_oracle,
                  after=("cot",)),
            Stage("stage2", "generate (vLLM), confidence targets, confidence-only SFT", self.stage2, after=("stage1",)),
            Stage("eval-scaffold", "eval run/score of the scaffold (stage 1)",
                  partial(self.evaluate_model, name="scaffold", model="stage1", beside=beside), after=("stage1",)),
            Stage("stage3", "GRPO on veRL's PPO trainer with vLLM rollouts", self.stage3, after=("stage2",)),
            Stage("eval-cold-start", "eval run/score of the cold-start model (stage 2)",
                  partial(self.evaluate_model, name="cold-start", model="stage2", beside=beside), after=("stage2",)),
            Stage("eval-final", "eval run/score of the final model (stage 3)",
                  partial(self.evaluate_model, name="EmoCaliber", model="stage3"), after=("stage3",)),
            Stage("report", "the report of the four runs, with plots", self.report_runs,
                  after=("eval-oracle", "eval-scaffold", "eval-cold-start", "eval-final")),
            Stage("index", "write the index of everything produced", self.index, after=("report",)),
        ]

    # -- stages ------------------------------------------------------------------------------
    def build_model(self, ctx: StageContext) -> None:
        ctx.python("tiny-model", str(self.base), "--seed", str(self.seed), "--text-layers", str(self.sizes.text_layers))
        ctx.outputs["model"] = str(self.base)

    def build_data(self, ctx: StageContext) -> None:
        from emocaliber_rl.world.layouts import write_layout

        per_label = dict(self.sizes.per_label)
        flags = {"FI": "--fi", "EmoSet": "--emoset", "WebEmo": "--webemo", "Abstract": "--abstract",
                 "ArtPhoto": "--artphoto", "UnbiasedEmo": "--unbiasedemo"}
        self.scenes.parent.mkdir(parents=True, exist_ok=True)
        self.scenes.unlink(missing_ok=True)  # the writer appends; a rerun starts it anew
        args = []
        for name, n in per_label.items():
            root = self.raw / name
            write_layout(name, root, n, self.scenes, seed=self.seed)
            args += [flags[name], str(root)]
        ctx.python("bench", "build", *args, "-o", str(self.bench), "--seed", str(self.seed), "--test-size", str(self.sizes.test_size),
                   "--no-progress")
        ctx.outputs.update(train=str(self.bench / "train.jsonl"), test=str(self.bench / "test.jsonl"),
                           summary=str(self.bench / "summary.md"), scenes=str(self.scenes))

    def build_cot(self, ctx: StageContext) -> None:
        # VEC-CoT through the real pipeline (paper Figure 4): `cot synthesize` and `cot judge`
        # over the OpenAI-compatible API, against the world's teacher and judge on 127.0.0.1,
        # which read each image's pixels (emocaliber_rl.world.teacher)
        from emocaliber_rl.data.chat_server import ServerConfig, ServerThread

        self.cot.mkdir(parents=True, exist_ok=True)
        synth, verdicts, kept = self.cot / "synth.jsonl", self.cot / "verdicts.jsonl", self.cot / "kept.jsonl"
        for path in (synth, verdicts):  # a rerun of this stage asks anew (the world is redrawn)
            for old in self.cot.glob(path.name + "*"):
                old.unlink()
        with ServerThread(ServerConfig(world=True)) as server:
            flags = ("--base-url", server.url, "--model", "world-teacher", "--no-auth", "--no-progress")
            ctx.python("cot", "synthesize", str(self.bench / "train.jsonl"), "-o", str(synth), *flags)
            ctx.python("cot", "judge", str(synth), "-o", str(verdicts), "--kept", str(kept), *flags)
        judged = cot_judge_counts(verdicts)
        print(f"  cot: {judged['judged']} CoTs judged, {judged['rejected']} rejected "
              f"(hallucination {judged['hallucination']}, leakage {judged['label_leakage']}, "
              f"inconsistency {judged['logical_inconsistency']}, local {judged['local_rejects']}); "
              f"{judged['distinct_elements']} distinct <element> texts", flush=True)
        # The train/test guard checks the training files' images against the test manifest's too
        # (bench build already keeps them disjoint); the validation exports below are test data
        # on purpose, hence --allow-test.
        guard = ("--test-manifest", str(self.bench / "test.jsonl"))
        ctx.python("cot", "split", str(kept), "-o", str(self.cot), "--seed", str(self.seed), *guard)
        d = self.data
        ctx.python("export", "sft1", str(self.cot / "vec_cot_1.jsonl"), "-o", str(d / "stage1.parquet"), *guard,
                   *TINY_PIXELS)
        ctx.python("export", "prompts2", str(self.cot / "vec_cot_2.jsonl"), "-o", str(d / "stage2_prompts.jsonl"),
                   *guard)
        # Every prompt is stage 1's, without the confidence request that stage-3 and evaluation
        # exports add by default: stages 1 and 2 train on prompts that do not ask, and the tiny
        # model, unlike a 7B one, does not carry its format over to a prompt it never saw (its
        # greedy answers parse on 95% of test images with the training prompt, ~20% with the ask).
        ctx.python("export", "rl3", str(self.cot / "vec_cot_3.jsonl"), "-o", str(d / "stage3_train.parquet"),
                   "--no-confidence", *guard, *TINY_PIXELS)
        ctx.python("export", "rl3", str(self.bench / "test.jsonl"), "-o", str(d / "stage3_val.parquet"),
                   "--split", "test", "--allow-test", "--no-confidence", *TINY_PIXELS)
        n = _write_parity_manifest(self.bench / "test.jsonl", self.parity_manifest, self.sizes.parity_per_task)
        with ctx.log_path.open("a", encoding="utf-8") as log:
            log.write(f"{n} test records ({self.sizes.parity_per_task} per subtask) for stage 3's validation "
                      f"rollouts -> {self.parity_manifest}\n")
        ctx.python("export", "rl3", str(self.parity_manifest), "-o", str(d / "stage3_parity.parquet"),
                   "--split", "test", "--allow-test", "--no-confidence", *TINY_PIXELS)
        ctx.python("export", "eval", str(self.bench / "test.jsonl"), "-o", str(d / "test.eval.jsonl"), "--no-confidence")
        ctx.outputs.update(cot=str(synth), verdicts=str(verdicts), kept=str(kept), split_table=str(self.cot / "table.md"),
                           data=str(d), judged=str(judged["judged"]), rejected=str(judged["rejected"]),
                           distinct_elements=f"{judged['distinct_elements']} of {judged['judged']}")

    def _recipe(self, ctx: StageContext, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        ctx.run(["bash", str(RECIPES / script), "--profile", "cpu", *args],
                env={"PYTHON": sys.executable, **(env or {})}, cwd=self.out)

    def stage1(self, ctx: StageContext) -> None:
        out = self.ckpt / "stage1"
        z = self.sizes
        # Two departures from the paper's stage 1, both because the tiny model starts random: a
        # learning rate far above its 1e-5 (format and answer must be learnt in minutes), and the
        # vision tower trains (the paper freezes a pretrained one; a random one must learn to see).
        self._recipe(ctx, "stage1_sft.sh", "--model", str(self.base), "--train", str(self.data / "stage1.parquet"),
                     "--out", str(out), "--steps", str(z.stage1_steps), f"data.train_batch_size={z.stage1_batch}",
                     f"data.micro_batch_size_per_gpu={z.stage1_batch}", f"optim.lr={z.stage1_lr}",
                     "trainer.total_epochs=100", "data.max_length=512", env={"EMOCALIBER_FREEZE_MODULES": ""})
        ctx.outputs["model"] = str(out / "final_hf")

    def stage2(self, ctx: StageContext) -> None:
        scaffold = self.ckpt / "stage1" / "final_hf"
        gen = self.data / "stage2_generations.jsonl"
        ctx.python("stage2", "generate", "--model", str(scaffold), "--prompts", str(self.data / "stage2_prompts.jsonl"),
                   "--out", str(gen), "--backend", "vllm", "--max-new-tokens", "128",
                   *(["--greedy"] if self.sizes.stage2_greedy else ["--temperature", "0.7"]),
                   # a stage that runs again follows a retrained checkpoint at the same path (the
                   # run manifest does not hash weights): its old generations must not be reused
                   "--seed", str(self.seed), "--no-progress", "--force-new", *TINY_PIXELS)
        labelled = self.data / "stage2.parquet"
        # labelling is a filter: the tiny scaffold's unparseable answers are rejected, listed in
        # OUT.rejects.jsonl (exit 3, written with rows left out)
        ctx.python("stage2", "label", str(gen), "--out", str(labelled), "--p-source", self.sizes.stage2_p_source,
                   "--target", self.sizes.stage2_target, "--bin-rows", str(self.sizes.stage2_bin_rows),
                   "--bin-by", self.sizes.stage2_bin_by, "--prior-rows", str(self.sizes.stage2_prior_rows),
                   "--tokenizer", str(scaffold), *TINY_PIXELS, accept=(0, 3))
        import pyarrow.parquet as pq

        kept = pq.ParquetFile(labelled).metadata.num_rows
        if kept == 0:
            raise StageFailed(f"stage 'stage2': the scaffold wrote no parseable answer in {gen} (0 rows labelled; "
                              f"reasons in {labelled}.rejects.jsonl): stage 1 taught it nothing usable")
        # veRL's SFT trainer needs at least one batch per epoch; the tiny scaffold's parse rate varies
        z = self.sizes
        batch = min(z.stage2_batch, kept)
        out = self.ckpt / "stage2"
        self._recipe(ctx, "stage2_sft.sh", "--model", str(scaffold), "--train", str(labelled), "--out", str(out),
                     "--steps", str(z.stage2_steps), f"data.train_batch_size={batch}",
                     f"data.micro_batch_size_per_gpu={batch}", f"optim.lr={z.stage2_lr}", "trainer.total_epochs=100",
                     "data.max_length=512", f"data.confidence_mask.include_response={str(z.stage2_anchor).lower()}",
                     f"data.confidence_mask.exclude_answer={str(z.stage2_exclude_answer).lower()}")
        ctx.outputs["labelled_rows"] = str(kept)
        ctx.outputs.update(generations=str(gen), labelled=str(labelled), model=str(out / "final_hf"))

    def stage3(self, ctx: StageContext) -> None:
        from emocaliber_rl.stage3_command import stage3_command
        from emocaliber_rl.study.calibration import Settings, grpo_overrides

        out = self.ckpt / "stage3"
        metrics = out / "metrics.jsonl"
        metrics.unlink(missing_ok=True)  # veRL's file logger appends; a rerun must not mix runs
        out.mkdir(parents=True, exist_ok=True)
        ctx.run(stage3_command(model=self.ckpt / "stage2" / "final_hf", train=self.data / "stage3_train.parquet",
                               val=self.data / "stage3_parity.parquet", out=out, steps=self.sizes.stage3_steps,
                               experiment="demo", overrides=["trainer.logger=[console,file]",
                               # validation before training only (the rollout-parity figures): the final
                               # model is scored by `eval run` below, a final validation would repeat it (109 s)
                               "trainer.test_freq=-1", *grpo_overrides(Settings())]),
                env={"PYTHON": sys.executable, "VERL_FILE_LOGGER_PATH": str(metrics)}, cwd=self.out)
        parity = rollout_parity(metrics)
        print(f"  stage3 rollouts: validation accuracy before training {parity['rollout_accuracy']:.3f} "
              f"(vLLM, greedy, n={parity['n']:.0f}); rollout_probs_diff_max per step "
              + ", ".join(f"{v:.2g}" for v in parity["probs_diff_max"]), flush=True)
        moved = require_weight_change(self.ckpt / "stage2" / "final_hf", out / "final_hf",
                                      f"{self.sizes.stage3_steps} GRPO steps (rewards per step in {metrics})")
        print(f"  stage3 weights: largest change {moved:.3g} from the cold-start model", flush=True)
        ctx.outputs.update(model=str(out / "final_hf"), metrics=str(metrics), largest_weight_change=f"{moved:.3g}")

    def eval_oracle(self, ctx: StageContext) -> None:
        # the known-answer world's oracle (posterior argmax and max): the row nothing can beat
        oracle = self.eval / "oracle"
        oracle.mkdir(parents=True, exist_ok=True)
        ctx.python("world", "oracle", "--scenes", str(self.scenes), "--manifest", str(self.data / "test.eval.jsonl"),
                   "--out", str(oracle / "predictions.jsonl"))
        ctx.python("eval", "score", str(oracle / "predictions.jsonl"), "--json", str(oracle / "scores.json"),
                   "--samples", str(oracle / "samples.jsonl"))
        ctx.outputs["scores"] = str(oracle / "scores.json")

    def evaluate_model(self, ctx: StageContext, name: str, model: str, *, beside: bool = False) -> None:
        """``eval run`` and ``eval score`` of the checkpoint ``model`` wrote, into ``eval/NAME``;
        ``beside``: it runs beside a training stage (``BESIDE_ENV``, ``BESIDE_NICE``)."""
        run_dir = self.eval / name
        run_dir.mkdir(parents=True, exist_ok=True)
        preds = run_dir / "predictions.jsonl"
        env = {k: v for k, v in BESIDE_ENV.items() if k not in os.environ} if beside else None
        # Greedy, as stage 3's validation rollouts are (so the parity section compares like with
        # like): on vLLM-CPU half of a sampled decode step is the seeded sampler's noise over the
        # whole vocabulary, and greedy decoding skips it (docs/demo-world.md)
        ctx.python("eval", "run", "--manifest", str(self.data / "test.eval.jsonl"), "--out", str(preds),
                   "--model", str(self.ckpt / model / "final_hf"), "--backend", self.eval_backend,
                   "--max-new-tokens", "128", "--greedy", "--seed", str(self.seed), "--no-progress", "--force-new",
                   *TINY_PIXELS, env=env, nice=BESIDE_NICE if beside else 0)
        ctx.python("eval", "score", str(preds), "--json", str(run_dir / "scores.json"),
                   "--samples", str(run_dir / "samples.jsonl"))
        if model != "stage1":  # the scaffold is never asked for a confidence
            require_confidence(run_dir / "scores.json", model, f"the {name} model ({self.ckpt / model / 'final_hf'})")
        ctx.outputs["scores"] = str(run_dir / "scores.json")

    def report_runs(self, ctx: StageContext) -> None:
        ctx.python("eval", "report", *(str(self.eval / name) for name in RUNS), "--out", str(self.report),
                   "--names", *RUNS)
        ctx.outputs.update(report=str(self.report), summary=str(self.report / "summary.html"))

    def index(self, ctx: StageContext) -> None:
        from emocaliber_rl.demo_effects import effects_table, goals, goals_table
        from emocaliber_rl.pipeline_runner import load_state

        state = load_state(self.out)
        wall = ctx.pipeline_wall()
        busy = sum(info["seconds"] for info in state["stages"].values())
        lines = [
            "# emocaliber demo",
            "",
            "Everything below was produced by `emocaliber demo` on a tiny Qwen2.5-VL (random start, Qwen's real",
            "tokenizer) and the known-answer world: each image mixes the colour signatures of two neighbouring",
            "labels with known probabilities, so the `oracle` row (the Bayes posterior's argmax and max) is the",
            "best any model can do. The distance of each stage to it is what the demo's few CPU minutes taught;",
            "for the real thing run the recipes on GPUs (docs/stage1.md, docs/stage2.md, docs/stage3.md).",
            "",
            (f"Wall time {wall / 60:.1f} min in all; the stages' own times below add up to {busy / 60:.1f} min "
             + (f"(up to {self.parallel} stages at a time when their inputs were ready)." if self.parallel > 1
                else "(one stage at a time).")),
            "",
            "| stage | what | wall time (s) | outputs |",
            "|---|---|---:|---|",
        ]
        for name, info in state["stages"].items():
            outs = ", ".join(f"{k}: `{Path(v).relative_to(self.out) if str(v).startswith(str(self.out)) else v}`"
                             for k, v in info.get("outputs", {}).items())
            lines.append(f"| {name} | {info['description']} | {info['seconds']:.1f} | {outs} |")
        lines += ["", "Logs of every command: `logs/<stage>.log`.", ""]
        moved = state["stages"].get("stage3", {}).get("outputs", {}).get("largest_weight_change")
        moved = float(moved) if moved is not None else None
        runs = {name: json.loads((self.eval / name / "scores.json").read_text(encoding="utf-8"))
                for name in RUNS if (self.eval / name / "scores.json").exists()}
        if runs:
            lines += ["## What each stage did", "",
                      "Accuracy against chance (a uniform guess among each subtask's candidates) and the oracle;",
                      "the share of test answers with a parseable `<confidence>`; that confidence's ECE, Brier and",
                      "ROC-AUC (lower, lower, higher is better). Computed by `eval score` (`eval/<run>/scores.json`).",
                      "", *effects_table(runs), "",
                      "### The demo's goals (docs/demo-world.md)", "",
                      *goals_table(goals(runs, wall, moved, cold_start_values=self._cold_start_values())), ""]
        for title, path in (("VECBench manifests (counts per subtask)", self.bench / "summary.md"),
                            ("VEC-CoT split", self.cot / "table.md")):
            if path.exists():
                lines += [f"## {title}", "", path.read_text(encoding="utf-8").strip(), ""]
        hist = self.data / "stage2.summary.png"
        if hist.exists():
            what = ("The Eq. 2 confidence targets" if self.sizes.stage2_target == "eq2" else
                    f"The confidence targets (`--target binned --bin-by {self.sizes.stage2_bin_by}`, not the "
                    "paper's Eq. 2: each bin's accuracy)")
            lines += ["## Stage-2 targets", "", (f"{what} of the scaffold's answers "
                                                   f"(`{(self.data / 'stage2.summary.json').relative_to(self.out)}`):"), "",
                      f"![stage-2 targets]({hist.relative_to(self.out)})", ""]
        lines += self._parity_section()
        tables = self.report / "tables.md"
        if tables.exists():
            lines += ["## Report", "", f"Open `{(self.report / 'summary.html').relative_to(self.out)}` in a browser.", "",
                      tables.read_text(encoding="utf-8").strip(), ""]
            for png in sorted(self.report.glob("*.png")):
                lines.append(f"![{png.stem}]({png.relative_to(self.out)})")
        (self.out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        ctx.outputs["index"] = str(self.out / "README.md")

    def _cold_start_values(self) -> dict[str, list[tuple[float, float]]] | None:
        from emocaliber_rl.demo_effects import confidence_values
        from emocaliber_rl.jsonl import read_jsonl

        path = self.eval / "cold-start" / "samples.jsonl"
        return confidence_values([row for _, row in read_jsonl(path)]) if path.exists() else None

    def _parity_section(self) -> list[str]:
        """Stage-3 rollouts against ``eval run`` of the same (cold-start) model on the same test
        images and prompt: a rollout path that loses the image shows as a gap here."""
        metrics, preds = self.ckpt / "stage3" / "metrics.jsonl", self.eval / "cold-start" / "predictions.jsonl"
        if not (metrics.exists() and preds.exists() and self.parity_manifest.exists()):
            return []
        parity = rollout_parity(metrics)
        evals = eval_accuracy_on(preds, self.parity_manifest)
        lines = ["## Stage-3 rollout parity", "",
                 "The cold-start model answers the same test images twice: through veRL's validation rollouts",
                 (f"(vLLM server, greedy, before the first GRPO step; {self.sizes.parity_per_task} test images "
                  f"of each subtask, `{self.parity_manifest.relative_to(self.out)}`) and through"),
                 "`emocaliber eval run` (the same images' rows of `eval/cold-start/predictions.jsonl`). The two",
                 "should agree; veRL's `training/rollout_probs_diff_max` (rollout vs actor token probability)",
                 "should stay small (fp32 here).", "",
                 "| subtask | n | rollouts | eval run | difference |", "|---|---:|---:|---:|---:|"]
        for task, acc in sorted(parity["per_task"].items()):
            ev = evals.get(task)
            if ev is None:
                lines.append(f"| {task} | - | {acc:.3f} | - | - |")
            else:
                lines.append(f"| {task} | {ev[1]} | {acc:.3f} | {ev[0]:.3f} | {acc - ev[0]:+.3f} |")
        lines += ["", "rollout_probs_diff_max per training step: "
                  + ", ".join(f"{v:.2g}" for v in parity["probs_diff_max"]), ""]
        return lines


def cot_judge_counts(verdicts: Path) -> dict[str, int]:
    """From `cot judge`'s output: CoTs judged, rejected (locally or by the judge, with the
    judge's flags counted) and how many distinct ``<element>`` texts they hold."""
    from emocaliber_rl.data.cot_store import ResultLog

    rows = list(ResultLog(verdicts).load(repair=False).values())
    out = {"judged": len(rows), "rejected": sum(not r.get("passed") for r in rows),
           "local_rejects": sum(bool(r.get("local_reject")) for r in rows)}
    for flag in ("hallucination", "label_leakage", "logical_inconsistency"):
        out[flag] = sum(bool((r.get("verdict") or {}).get(flag)) for r in rows)
    out["distinct_elements"] = len({(r.get("steps") or {}).get("element") for r in rows})
    return out


def eval_accuracy_on(predictions: Path, manifest: Path) -> dict[str, tuple[float, int]]:
    """Per subtask, ``eval run``'s accuracy and count over the records of ``manifest`` (matched by
    ``id``), parsed and judged by the scorer ``eval score`` uses."""
    from emocaliber_rl.data.records import read_manifest
    from emocaliber_rl.evaluation.scoring import samples_from_rows
    from emocaliber_rl.jsonl import iter_jsonl

    wanted = {rec.id for rec in read_manifest(manifest)}
    rows = [(n, obj) for n, obj, err in iter_jsonl(predictions)
            if err is None and isinstance(obj, dict) and obj.get("id") in wanted]
    missing = len(wanted) - len(rows)
    if missing:
        raise StageFailed(f"{predictions}: {missing} of the {len(wanted)} images of {manifest} have no prediction")
    samples = samples_from_rows(rows, path=str(predictions))
    out: dict[str, tuple[float, int]] = {}
    for task in sorted(set(samples.subtask.tolist())):
        idx = samples.subtask == task
        out[task] = (float(samples.correct[idx].mean()), int(idx.sum()))
    return out


def weight_change(before: Path, after: Path) -> float:
    """Largest absolute difference between two HF checkpoints' tensors of the same name."""
    import torch
    from safetensors.torch import load_file

    def tensors(folder: Path) -> dict:
        out: dict = {}
        for f in sorted(folder.glob("*.safetensors")):
            out.update(load_file(str(f)))
        return out

    a, b = tensors(before), tensors(after)
    if not a or a.keys() != b.keys():
        raise StageFailed(f"cannot compare {before} and {after}: their safetensors hold different tensors")
    return max(float(torch.max(torch.abs(a[k].float() - b[k].float()))) for k in a)


def require_weight_change(before: Path, after: Path, what: str) -> float:
    """``weight_change``, or ``StageFailed`` naming stage 3 when it is 0: every rollout group scored
    alike (GRPO had no gradient) or the update never reached the saved checkpoint."""
    moved = weight_change(before, after)
    if moved == 0.0:
        raise StageFailed(f"stage 'stage3': {what} left every weight of {after} equal to {before}'s "
                          "(largest change 0): stage 3 taught nothing")
    return moved


def require_confidence(scores_path: Path, stage: str, who: str) -> float:
    """The share of test answers with a parseable ``<confidence>``, or ``StageFailed`` naming
    ``stage`` when it is 0: a model trained to verbalise confidence that never does is unusable."""
    from emocaliber_rl.demo_effects import parse_rate

    scores = json.loads(scores_path.read_text(encoding="utf-8"))
    n = sum(g["n"] for g in scores["groups"].values())
    rate = parse_rate(scores)
    if n and rate == 0.0:
        raise StageFailed(f"stage '{stage}': {who} wrote a parseable <confidence> on 0 of {n} test answers "
                          f"(scores in {scores_path}); rerun from that stage")
    return rate


def rollout_parity(metrics_path: Path) -> dict:
    """From veRL's file log of a stage-3 run: the validation rollouts' accuracy before training
    (overall and per data_source) and ``training/rollout_probs_diff_max`` of every step."""
    by_step: dict[int, dict] = {}
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            by_step.setdefault(int(rec["step"]), {}).update(rec["data"])
    first = by_step.get(0, {})
    per_task = {k.split("/")[1]: float(v) for k, v in first.items()
                if k.startswith("val-aux/") and k.endswith("/correct/mean@1")}
    return {"rollout_accuracy": float(first.get("val-calib/all/accuracy", float("nan"))),
            "n": float(first.get("val-calib/all/n", 0)),
            "per_task": per_task,
            "probs_diff_max": [float(m["training/rollout_probs_diff_max"]) for _, m in sorted(by_step.items())
                               if "training/rollout_probs_diff_max" in m]}
