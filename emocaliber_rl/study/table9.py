"""Paper Table 9 / Figure 6 with veRL's real GRPO trainer: does std normalisation push verbalised
confidence to the extremes?

Four stage-3 runs from one cold-start model, identical but for two switches (paper 4.8):

====  ===============================  ==========================================
 #    R_conf                           advantage
====  ===============================  ==========================================
 1    Brier, Eq. 6: ``-(I - c)^2``     ``grpo`` with std normalisation (veRL's)
 2    Brier                            ``grpo_no_std`` (R - group mean)
 3    log-likelihood, Eq. 4            ``grpo`` with std normalisation
 4    log-likelihood (EmoCaliber)      ``grpo_no_std``
====  ===============================  ==========================================

Each run is ``recipes/stage3_grpo.sh`` (veRL's ``main_ppo``, vLLM rollouts) with the same seed, data,
steps and learning rate; then ``emocaliber eval run`` + ``eval score`` of its final checkpoint on the
test manifest. A finished run leaves ``RUN/done.json``: a killed study continues with the others.
At the end ``eval report`` writes the tables and Figure 6's histograms for the cold-start model and
the four runs, and this module adds Table 9 (Acc and Brier per group, ECE, share of confidences
>= 0.9) and the validation curves of ECE and mean confidence per step (``val-calib/`` metrics).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emocaliber_rl.jsonl import read_jsonl
from emocaliber_rl.stage3_command import stage3_command

HIGH_CONFIDENCE = 0.9


@dataclass(frozen=True)
class RunConfig:
    name: str
    conf_reward: str  # "brier" (Eq. 6) or "loglik" (Eq. 4)
    std_norm: bool  # veRL's grpo with std normalisation, else grpo_no_std

    @property
    def label(self) -> str:
        return f"#{self.name[0]} {'Brier' if self.conf_reward == 'brier' else 'log-lik'}, {'std' if self.std_norm else 'no std'}"


RUNS: tuple[RunConfig, ...] = (
    RunConfig("1_brier_std", "brier", True),
    RunConfig("2_brier_nostd", "brier", False),
    RunConfig("3_loglik_std", "loglik", True),
    RunConfig("4_loglik_nostd", "loglik", False),
)


def run_overrides(run: RunConfig) -> list[str]:
    """The Hydra overrides that make one Table-9 configuration (everything else is shared)."""
    adv = (["algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=True"] if run.std_norm
           else ["algorithm.adv_estimator=grpo_no_std", "algorithm.norm_adv_by_std_in_grpo=False"])
    return [*adv, f"++reward.custom_reward_function.reward_kwargs.conf_reward={run.conf_reward}"]


def recipe_command(run: RunConfig, *, model: str, train: str, val: str, out: Path, steps: int, lr: float,
                   profile: str, seed: int, extra: list[str]) -> list[str]:
    return stage3_command(profile=profile, model=model, train=train, val=val, out=out / "ckpt", steps=steps,
                          experiment=f"table9_{run.name}",
                          overrides=[*run_overrides(run), f"actor_rollout_ref.actor.optim.lr={lr}", f"data.seed={seed}",
                                     "trainer.logger=[console,file]", f"trainer.save_freq={steps}", *extra])


def run_logged(cmd: list[str], log: Path, env: dict[str, str]) -> None:
    """Run ``cmd`` with its output appended to ``log``; RuntimeError with the log's tail on failure."""
    with log.open("a", encoding="utf-8") as f:
        f.write("\n$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd[:4])} ... (log {log})\n{tail}")


def val_curves(metrics_path: Path, group: str = "ID_VER") -> dict[str, list[tuple[int, float]]]:
    """ECE and mean confidence of ``group`` at every validation of one run (veRL's file log)."""
    curves: dict[str, list[tuple[int, float]]] = {"ece": [], "mean_conf": []}
    if not metrics_path.exists():
        return curves
    for _, rec in read_jsonl(metrics_path):
        for key, series in curves.items():
            value = rec["data"].get(f"val-calib/{group}/{key}")
            if value is not None:
                series.append((int(rec["step"]), float(value)))
    return curves


def high_confidence_share(samples_path: Path, group: str = "ID VER") -> float | None:
    """Share of verbalised confidences >= 0.9 among ``group``'s samples that state one."""
    confs = []
    for _, row in read_jsonl(samples_path):
        if row.get("group") == group and row.get("conf_verb") is not None:
            confs.append(float(row["conf_verb"]))
    return sum(c >= HIGH_CONFIDENCE for c in confs) / len(confs) if confs else None


def table9_markdown(rows: list[tuple[str, dict, float | None]]) -> str:
    """Table 9: Acc and Brier per group (paper layout) plus ID-VER ECE and share of c >= 0.9."""
    groups = ("ID VER", "ID VSA", "OOD VER")
    head = "| run | " + " | ".join(f"{g} Acc | {g} Brier" for g in groups) + " | ID VER ECE | ID VER c>=0.9 |"
    out = [head, "|---|" + "---:|" * (2 * len(groups) + 2)]
    for name, scores, share in rows:
        cells = []
        for g in groups:
            grp = scores.get("groups", {}).get(g, {})
            verb = grp.get("verb", {})
            cells += [_pct(grp.get("acc")), _pct(verb.get("brier"))]
        ece = scores.get("groups", {}).get("ID VER", {}).get("verb", {}).get("ece")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {_pct(ece)} | {_pct(share)} |")
    return "\n".join(out) + "\n"


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.2f}"


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (name, c) in enumerate(curves.items()):
        for ax, key in zip(axes, ("ece", "mean_conf")):
            if c[key]:
                xs, ys = zip(*c[key])
                # C0 is the cold-start model's colour in the report's plots: run k keeps Ck there and here
                ax.plot(xs, ys, marker="o", label=name, color=f"C{i + 1}")
    for ax, title in zip(axes, ("ID VER ECE (validation)", "ID VER mean confidence (validation)")):
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run_study(*, model: str, train: str, val: str, manifest: str, out: Path, steps: int, lr: float,
              profile: str = "cpu", seed: int = 0, eval_args: list[str] | None = None,
              extra: list[str] | None = None, runs: tuple[RunConfig, ...] = RUNS,
              oracle: Path | None = None, echo=print) -> dict[str, Any]:
    """Run (or continue) the four runs, evaluate each and write Table 9, Figure 6 and the curves.
    ``oracle``: a scored run folder (``scores.json``, ``samples.jsonl``) shown as the optimum."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ}
    cli = [sys.executable, "-m", "emocaliber_rl.cli"]
    eval_args = list(eval_args or [])
    durations: list[float] = []
    baseline = out / "0_cold_start"
    if not (baseline / "scores.json").exists():  # the starting point, evaluated like the runs
        baseline.mkdir(parents=True, exist_ok=True)
        echo("[table9] evaluating the cold-start model")
        _evaluate(cli, model, manifest, baseline, seed, eval_args, env)
    for i, run in enumerate(runs, 1):
        rdir = out / run.name
        done = rdir / "done.json"
        if done.exists():
            durations.append(json.loads(done.read_text())["seconds"])
            echo(f"[table9] {i}/{len(runs)} {run.label}: done earlier ({durations[-1]:.0f} s), skipped")
            continue
        rdir.mkdir(parents=True, exist_ok=True)
        (rdir / "metrics.jsonl").unlink(missing_ok=True)  # veRL's file logger appends
        eta = (sum(durations) / len(durations)) * (len(runs) - i + 1) if durations else None
        echo(f"[table9] {i}/{len(runs)} {run.label}: training {steps} steps"
             + (f" (about {eta / 60:.0f} min left)" if eta else ""))
        t0 = time.monotonic()
        log = rdir / "run.log"
        run_logged(recipe_command(run, model=model, train=train, val=val, out=rdir, steps=steps, lr=lr,
                                   profile=profile, seed=seed, extra=list(extra or [])),
                    log, {**env, "VERL_FILE_LOGGER_PATH": str(rdir / "metrics.jsonl")})
        _evaluate(cli, str(rdir / "ckpt" / "final_hf"), manifest, rdir, seed, eval_args, env)
        durations.append(time.monotonic() - t0)
        done.write_text(json.dumps({"seconds": durations[-1], "steps": steps, "lr": lr}))
        echo(f"[table9] {i}/{len(runs)} {run.label}: finished in {durations[-1]:.0f} s")
    finished = [out / r.name for r in runs if (out / r.name / "scores.json").exists()]
    # a run named "oracle" is the report's dashed reference in every histogram and diagram
    first, first_names = ([str(oracle)], ["oracle"]) if oracle is not None else ([], [])
    run_logged([*cli, "eval", "report", *first, str(baseline), *map(str, finished), "--out", str(out / "report"),
                 "--names", *first_names, "cold-start", *[r.label for r in runs if out / r.name in finished]],
                out / "report.log", env)
    summary = write_outputs(out, runs, baseline=baseline, oracle=oracle)
    summary["report"] = str(out / "report" / "summary.html")
    return summary


def _evaluate(cli: list[str], model: str, manifest: str, rdir: Path, seed: int, eval_args: list[str],
              env: dict[str, str]) -> None:
    log = rdir / "run.log"
    run_logged([*cli, "eval", "run", "--model", model, "--manifest", manifest, "--out", str(rdir / "predictions.jsonl"),
                 "--seed", str(seed), "--no-progress", "--force-new", *eval_args], log, env)
    run_logged([*cli, "eval", "score", str(rdir / "predictions.jsonl"), "--json", str(rdir / "scores.json"),
                 "--samples", str(rdir / "samples.jsonl")], log, env)


def _step0(baseline_scores: dict | None, group: str = "ID VER") -> dict[str, float | None]:
    """The cold-start model's ECE and mean verbalised confidence from its ``eval score``: the step-0
    point of every curve when the runs skip validation before training (``trainer.val_before_train=False``;
    with it on, veRL's step-0 ``val-calib/`` values equal these: docs/demo-world.md, the stage-3 probe)."""
    verb = (baseline_scores or {}).get("groups", {}).get(group, {}).get("verb", {})
    return {"ece": verb.get("ece"), "mean_conf": verb.get("mean_conf")}


def write_outputs(out: Path, runs: tuple[RunConfig, ...] = RUNS, baseline: Path | None = None,
                  oracle: Path | None = None) -> dict[str, Any]:
    """Table 9 (md), the validation curves (png) and a summary json from the finished runs."""
    def scored(folder: Path | None) -> dict | None:  # a finished, scored run folder, else None
        return json.loads((folder / "scores.json").read_text()) if folder and (folder / "scores.json").exists() else None

    baseline_scores = scored(baseline)
    start = _step0(baseline_scores)
    rows = [(name, scores, high_confidence_share(folder / "samples.jsonl"))
            for name, folder, scores in (("oracle", oracle, scored(oracle)), ("cold-start", baseline, baseline_scores))
            if scores is not None]
    curves = {}
    for run in runs:
        name, folder = run.label, out / run.name
        scores = scored(folder)
        if scores is None:
            continue
        rows.append((name, scores, high_confidence_share(folder / "samples.jsonl")))
        curves[name] = val_curves(folder / "metrics.jsonl")
        for key, value in start.items():  # every run starts from the cold-start model
            if value is not None and not any(step == 0 for step, _ in curves[name][key]):
                curves[name][key].insert(0, (0, value))
    (out / "table9.md").write_text(table9_markdown(rows), encoding="utf-8")
    if curves:
        plot_curves(curves, out / "val_curves.png")
    summary = {"runs": [r[0] for r in rows], "table": str(out / "table9.md"),
               "curves": str(out / "val_curves.png") if curves else None,
               "curve_points": {name: {k: [list(p) for p in v] for k, v in c.items()} for name, c in curves.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
