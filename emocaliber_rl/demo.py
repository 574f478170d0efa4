"""`emocaliber demo`: the whole three-stage pipeline on a tiny model, on CPU, in one command.

With nothing beyond the install it: builds the tiny Qwen2.5-VL (Qwen's real tokenizer, random
weights); draws the known-answer world (``emocaliber_rl.world``: every image has a known label
posterior) in each raw dataset's published layout and builds VECBench manifests from it (every
subtask of the test split represented); writes CoT-shaped stage-1 data from templates (the real
pipeline asks an MLLM: `emocaliber cot synthesize`) and splits it 6:3:1; trains stage 1 on veRL's
SFT trainer; generates with vLLM (its CPU build), labels with Eq. 2 and trains the
confidence-only stage 2; runs stage 3 on veRL's GRPO trainer with vLLM rollouts for a few steps;
evaluates the scaffold, cold-start and final models on the test split (HF transformers engine by
default, vLLM with ``--eval-backend vllm``) beside the world's Bayes oracle, and writes the report
with its plots and an index, ``OUT/README.md``.

Every step is the same command a user runs (`emocaliber ...`, `recipes/*.sh`); the demo only
chooses tiny sizes and a high learning rate. The oracle row shows the best any model can do on
these images: the distance to it is what each stage has (or has not yet) learned.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from emocaliber_rl.pipeline_runner import Stage, StageContext, StageFailed, run_pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "recipes"
# The tiny model's processor has its own small pixel bounds (a few image tokens per image, what
# its CPU training relies on): the demo's exports and inference keep them instead of the
# official release's 200704..451584 that the commands apply by default.
TINY_PIXELS = ("--processor-pixels",)

# Words the tiny tokenizer was trained on, so template CoTs tokenize into few tokens.
_STEP_WORDS = {
    "element": ["red sky", "a dog", "bright colors", "flowers", "a dark street", "fire", "the sea", "trees"],
    "human": ["a child smiling", "no people", "a crowd", "a woman with tears", "a man alone", "faces"],
    "context": ["a city at night", "a room", "a mountain road", "rain", "snow", "a warm house"],
    "interaction": ["light and dark", "the crowd together", "soft light on the face", "cold colors"],
    "analysis": ["the mood is intense", "the tone is gentle", "the atmosphere is calm", "a strong feeling"],
}


def _template_steps(rng: random.Random) -> dict[str, str]:
    return {tag: rng.choice(words) for tag, words in _STEP_WORDS.items()}


def _write_cot_manifest(train_manifest: Path, out: Path, seed: int) -> int:
    """Attach a templated five-step CoT to every training record (stand-in for the MLLM)."""
    from emocaliber_rl.data.records import read_manifest, write_manifest

    rng = random.Random(seed)
    records = read_manifest(train_manifest)
    for rec in records:
        rec.steps = _template_steps(rng)
    write_manifest(out, records)
    return len(records)


class Demo:
    """The demo's stages; sizes chosen so the whole run fits in minutes on 2 CPU cores."""

    def __init__(self, out: Path, *, seed: int = 0, eval_backend: str = "hf") -> None:
        self.out = out
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

    def stages(self) -> list[Stage]:
        return [
            Stage("model", "build the tiny random Qwen2.5-VL", self.build_model),
            Stage("data", "draw raw datasets and build VECBench manifests", self.build_data),
            Stage("cot", "template CoTs, 6:3:1 split, exports for each stage", self.build_cot),
            Stage("stage1", "structured-CoT SFT on veRL's SFT trainer", self.stage1),
            Stage("stage2", "generate (vLLM), Eq. 2 labels, confidence-only SFT", self.stage2),
            Stage("stage3", "GRPO on veRL's PPO trainer with vLLM rollouts", self.stage3),
            Stage("evaluate", "eval run/score for the three stages, report with plots", self.evaluate),
            Stage("index", "write the index of everything produced", self.index),
        ]

    # -- stages ------------------------------------------------------------------------------
    def build_model(self, ctx: StageContext) -> None:
        ctx.python("tiny-model", str(self.base), "--seed", str(self.seed))
        ctx.outputs["model"] = str(self.base)

    def build_data(self, ctx: StageContext) -> None:
        from emocaliber_rl.world.layouts import write_layout

        per_label = {"FI": 8, "EmoSet": 8, "WebEmo": 2, "Abstract": 1, "ArtPhoto": 1, "UnbiasedEmo": 1}
        flags = {"FI": "--fi", "EmoSet": "--emoset", "WebEmo": "--webemo", "Abstract": "--abstract",
                 "ArtPhoto": "--artphoto", "UnbiasedEmo": "--unbiasedemo"}
        self.scenes.parent.mkdir(parents=True, exist_ok=True)
        self.scenes.unlink(missing_ok=True)  # the writer appends; a rerun starts it anew
        args = []
        for name, n in per_label.items():
            root = self.raw / name
            write_layout(name, root, n, self.scenes, seed=self.seed)
            args += [flags[name], str(root)]
        ctx.python("bench", "build", *args, "-o", str(self.bench), "--seed", str(self.seed), "--test-size", "4",
                   "--no-progress")
        ctx.outputs.update(train=str(self.bench / "train.jsonl"), test=str(self.bench / "test.jsonl"),
                           summary=str(self.bench / "summary.md"), scenes=str(self.scenes))

    def build_cot(self, ctx: StageContext) -> None:
        cot_all = self.cot / "vec_cot.jsonl"
        self.cot.mkdir(parents=True, exist_ok=True)
        n = _write_cot_manifest(self.bench / "train.jsonl", cot_all, self.seed)
        with ctx.log_path.open("a", encoding="utf-8") as log:
            log.write(f"templated CoTs for {n} training records -> {cot_all}\n")
        ctx.python("cot", "split", str(cot_all), "-o", str(self.cot), "--seed", str(self.seed))
        d = self.data
        ctx.python("export", "sft1", str(self.cot / "vec_cot_1.jsonl"), "-o", str(d / "stage1.parquet"), *TINY_PIXELS)
        ctx.python("export", "prompts2", str(self.cot / "vec_cot_2.jsonl"), "-o", str(d / "stage2_prompts.jsonl"))
        ctx.python("export", "rl3", str(self.cot / "vec_cot_3.jsonl"), "-o", str(d / "stage3_train.parquet"),
                   *TINY_PIXELS)
        ctx.python("export", "rl3", str(self.bench / "test.jsonl"), "-o", str(d / "stage3_val.parquet"),
                   "--split", "test", *TINY_PIXELS)
        ctx.python("export", "eval", str(self.bench / "test.jsonl"), "-o", str(d / "test.eval.jsonl"))
        ctx.outputs.update(split_table=str(self.cot / "table.md"), data=str(d))

    def _recipe(self, ctx: StageContext, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        ctx.run(["bash", str(RECIPES / script), "--profile", "cpu", *args],
                env={"PYTHON": sys.executable, **(env or {})}, cwd=self.out)

    def stage1(self, ctx: StageContext) -> None:
        out = self.ckpt / "stage1"
        # A learning rate far above the paper's 1e-5: the random tiny model must learn the
        # response format in a few dozen CPU steps for the later stages to have anything to parse.
        self._recipe(ctx, "stage1_sft.sh", "--model", str(self.base), "--train", str(self.data / "stage1.parquet"),
                     "--out", str(out), "--steps", "60", "data.train_batch_size=8", "data.micro_batch_size_per_gpu=8",
                     "optim.lr=3e-3", "trainer.total_epochs=100", "data.max_length=512")
        ctx.outputs["model"] = str(out / "final_hf")

    def stage2(self, ctx: StageContext) -> None:
        scaffold = self.ckpt / "stage1" / "final_hf"
        gen = self.data / "stage2_generations.jsonl"
        ctx.python("stage2", "generate", "--model", str(scaffold), "--prompts", str(self.data / "stage2_prompts.jsonl"),
                   "--out", str(gen), "--backend", "vllm", "--max-new-tokens", "96", "--temperature", "1.0",
                   # a stage that runs again follows a retrained checkpoint at the same path (the
                   # run manifest does not hash weights): its old generations must not be reused
                   "--seed", str(self.seed), "--no-progress", "--force-new", *TINY_PIXELS)
        labelled = self.data / "stage2.parquet"
        ctx.python("stage2", "label", str(gen), "--out", str(labelled), *TINY_PIXELS)
        import pyarrow.parquet as pq

        kept = pq.ParquetFile(labelled).metadata.num_rows
        if kept == 0:
            raise StageFailed(f"stage 'stage2': the scaffold wrote no parseable answer in {gen} (0 rows labelled; "
                              f"reasons in {labelled}.rejects.jsonl): stage 1 taught it nothing usable")
        # veRL's SFT trainer needs at least one batch per epoch; the tiny scaffold's parse rate varies
        batch = min(8, kept)
        out = self.ckpt / "stage2"
        self._recipe(ctx, "stage2_sft.sh", "--model", str(scaffold), "--train", str(labelled), "--out", str(out),
                     "--steps", "20", f"data.train_batch_size={batch}", f"data.micro_batch_size_per_gpu={batch}",
                     "optim.lr=3e-4", "trainer.total_epochs=100", "data.max_length=512")
        ctx.outputs["labelled_rows"] = str(kept)
        ctx.outputs.update(generations=str(gen), labelled=str(labelled), model=str(out / "final_hf"))

    def stage3(self, ctx: StageContext) -> None:
        out = self.ckpt / "stage3"
        metrics = out / "metrics.jsonl"
        metrics.unlink(missing_ok=True)  # veRL's file logger appends; a rerun must not mix runs
        out.mkdir(parents=True, exist_ok=True)
        self._recipe(ctx, "stage3_grpo.sh", "--model", str(self.ckpt / "stage2" / "final_hf"),
                     "--train", str(self.data / "stage3_train.parquet"), "--val", str(self.data / "stage3_val.parquet"),
                     "--out", str(out), "--steps", "2", "--experiment", "demo", "trainer.logger=[console,file]",
                     env={"VERL_FILE_LOGGER_PATH": str(metrics)})
        parity = rollout_parity(metrics)
        print(f"  stage3 rollouts: validation accuracy before training {parity['rollout_accuracy']:.3f} "
              f"(vLLM, greedy, n={parity['n']:.0f}); rollout_probs_diff_max per step "
              + ", ".join(f"{v:.2g}" for v in parity["probs_diff_max"]), flush=True)
        ctx.outputs.update(model=str(out / "final_hf"), metrics=str(metrics))

    def evaluate(self, ctx: StageContext) -> None:
        # the known-answer world's oracle (posterior argmax and max): the row nothing can beat
        oracle = self.eval / "oracle"
        oracle.mkdir(parents=True, exist_ok=True)
        ctx.python("world", "oracle", "--scenes", str(self.scenes), "--manifest", str(self.data / "test.eval.jsonl"),
                   "--out", str(oracle / "predictions.jsonl"))
        ctx.python("eval", "score", str(oracle / "predictions.jsonl"), "--json", str(oracle / "scores.json"),
                   "--samples", str(oracle / "samples.jsonl"))
        runs = [oracle]
        for name, model in (("scaffold", "stage1"), ("cold-start", "stage2"), ("EmoCaliber", "stage3")):
            run_dir = self.eval / name
            run_dir.mkdir(parents=True, exist_ok=True)
            preds = run_dir / "predictions.jsonl"
            ctx.python("eval", "run", "--manifest", str(self.data / "test.eval.jsonl"), "--out", str(preds),
                       "--model", str(self.ckpt / model / "final_hf"), "--backend", self.eval_backend,
                       "--max-new-tokens", "96", "--seed", str(self.seed), "--no-progress", "--force-new", *TINY_PIXELS)
            ctx.python("eval", "score", str(preds), "--json", str(run_dir / "scores.json"),
                       "--samples", str(run_dir / "samples.jsonl"))
            runs.append(run_dir)
        ctx.python("eval", "report", *map(str, runs), "--out", str(self.report),
                   "--names", "oracle", "scaffold", "cold-start", "EmoCaliber")
        ctx.outputs.update(report=str(self.report), summary=str(self.report / "summary.html"))

    def index(self, ctx: StageContext) -> None:
        from emocaliber_rl.pipeline_runner import load_state

        state = load_state(self.out)
        lines = [
            "# emocaliber demo",
            "",
            "Everything below was produced by `emocaliber demo` on a tiny Qwen2.5-VL (random start, Qwen's real",
            "tokenizer) and the known-answer world: each image mixes the colour signatures of two neighbouring",
            "labels with known probabilities, so the `oracle` row (the Bayes posterior's argmax and max) is the",
            "best any model can do. The distance of each stage to it is what the demo's few CPU minutes taught;",
            "for the real thing run the recipes on GPUs (docs/stage1.md, docs/stage2.md, docs/stage3.md).",
            "",
            "| stage | what | wall time (s) | outputs |",
            "|---|---|---:|---|",
        ]
        for name, info in state["stages"].items():
            outs = ", ".join(f"{k}: `{Path(v).relative_to(self.out) if str(v).startswith(str(self.out)) else v}`"
                             for k, v in info.get("outputs", {}).items())
            lines.append(f"| {name} | {info['description']} | {info['seconds']:.1f} | {outs} |")
        lines += ["", "Logs of every command: `logs/<stage>.log`.", ""]
        for title, path in (("VECBench manifests (counts per subtask)", self.bench / "summary.md"),
                            ("VEC-CoT split", self.cot / "table.md")):
            if path.exists():
                lines += [f"## {title}", "", path.read_text(encoding="utf-8").strip(), ""]
        lines += self._parity_section()
        # tables.md holds every table once, in the paper's order (the per-table .md files repeat them)
        tables = self.report / "tables.md"
        if tables.exists():
            lines += ["## Report", "", f"Open `{(self.report / 'summary.html').relative_to(self.out)}` in a browser.", ""]
            lines += [tables.read_text(encoding="utf-8").strip(), ""]
            for png in sorted(self.report.glob("*.png")):
                lines.append(f"![{png.stem}]({png.relative_to(self.out)})")
        (self.out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        ctx.outputs["index"] = str(self.out / "README.md")


    def _parity_section(self) -> list[str]:
        """Stage-3 rollouts against ``eval run`` of the same (cold-start) model on the same test
        images and prompt: a rollout path that loses the image shows as a gap here."""
        metrics, scores = self.ckpt / "stage3" / "metrics.jsonl", self.eval / "cold-start" / "scores.json"
        if not (metrics.exists() and scores.exists()):
            return []
        parity = rollout_parity(metrics)
        tasks = json.loads(scores.read_text(encoding="utf-8"))["tasks"]
        lines = ["## Stage-3 rollout parity", "",
                 "The cold-start model answers the test split twice: through veRL's validation rollouts (vLLM",
                 "server, greedy, before the first GRPO step) and through `emocaliber eval run`. The two should",
                 "agree; veRL's `training/rollout_probs_diff_max` (rollout vs actor token probability) should",
                 "stay small (fp32 here).", "",
                 "| subtask | rollouts | eval run | difference |", "|---|---:|---:|---:|"]
        for task, acc in sorted(parity["per_task"].items()):
            ev = tasks.get(task, {}).get("acc")
            diff = f"{acc - ev:+.3f}" if ev is not None else "-"
            lines.append(f"| {task} | {acc:.3f} | {ev:.3f} | {diff} |" if ev is not None else f"| {task} | {acc:.3f} | - | - |")
        lines += ["", "rollout_probs_diff_max per training step: "
                  + ", ".join(f"{v:.2g}" for v in parity["probs_diff_max"]), ""]
        return lines


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


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    demo = Demo(out, seed=args.seed, eval_backend=args.eval_backend)
    print(f"emocaliber demo -> {out}" + (" (resuming)" if args.resume else ""), flush=True)
    try:
        state = run_pipeline(demo.stages(), out, resume=args.resume, echo=lambda m: print(m, flush=True))
    except StageFailed as e:
        print(f"\nFAILED: {e}\nFix the cause and continue with: emocaliber demo --out {args.out} --resume",
              file=sys.stderr)
        return 1
    total = sum(s["seconds"] for s in state["stages"].values())
    print(json.dumps({name: s["seconds"] for name, s in state["stages"].items()}))
    print(f"done in {total:.0f} s of stage time; index: {out / 'README.md'}; report: {out / 'report' / 'summary.html'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run all three stages on a tiny model on CPU, then evaluate and report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", help="folder for everything the demo writes (default runs/demo)")
    p.add_argument("--resume", action="store_true",
                   help="skip the stages that finished in an earlier run into the same --out")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, data and sampling (default 0)")
    p.add_argument("--eval-backend", choices=("vllm", "hf"), default="hf",
                   help="inference engine of the evaluation of the three checkpoints (default hf: on the tiny "
                        "model a vLLM engine start costs more than the generation; stage 2 and stage 3 "
                        "already run vLLM)")
    p.set_defaults(func=_run)
