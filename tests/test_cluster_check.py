"""``submit_stage*.sh --check``: what each node reports and how the nodes are compared
(emocaliber_rl/cluster_check.py), on real files; the Ray cluster run is in
tests/test_multinode.py (slow)."""

from __future__ import annotations

import os
from pathlib import Path

from emocaliber_rl.cluster_check import dry_run_problems, fingerprint, recipe_paths, render, rows

PLUGIN = {"host": "a", "emocaliber_rl": "/x", "verl": "0.9.1", "VERL_USE_EXTERNAL_MODULES": "emocaliber_rl.verl_plugins",
          "VERL_PLATFORM": "cpu", "EMOCALIBER_LOSS_ROWS": None, "platform": "PlatformCPU", "grpo_no_std": True,
          "val_calibration_hook": True}


def _report(paths: dict, rc: int = 0, **plugin) -> dict:
    return {"plugin": {**PLUGIN, **plugin}, "paths": paths, "dry_run": {"rc": rc, "problems": []}}


def test_recipe_paths_reads_the_path_options() -> None:
    args = ["--profile", "cpu", "--model", "/m", "--train=/a.parquet,/b.parquet", "--val", "/v.parquet",
            "--out", "/o", "--steps", "3", "trainer.x=1"]
    assert recipe_paths(args) == [("--model", "/m"), ("--train", "/a.parquet"), ("--train", "/b.parquet"),
                                  ("--val", "/v.parquet"), ("--out", "/o")]


def test_fingerprint_kinds(tmp_path: Path) -> None:
    small = tmp_path / "config.json"
    small.write_text("{}")
    big = tmp_path / "w.bin"
    big.write_bytes(b"a" * (1 << 20) + b"b" * 10 + b"c" * (1 << 20))  # over 1 MiB: size and ends
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert fingerprint(str(tmp_path / "nope")) == {"kind": "missing"}
    assert fingerprint("Qwen/Qwen2.5-VL-7B-Instruct") == {"kind": "hub id"}
    # sha256 of b"{}" (sha256sum on the command line)
    assert fingerprint(str(small)) == {"kind": "file", "resolved": str(small), "size": 2,
                                       "sha256": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
    fp = fingerprint(str(big))
    assert fp["size"] == 2 * (1 << 20) + 10 and "ends_sha256" in fp and "sha256" not in fp
    # the middle of a big file is not read: the same ends, the same fingerprint
    big.write_bytes(b"a" * (1 << 20) + b"X" * 10 + b"c" * (1 << 20))
    assert fingerprint(str(big)) == fp
    d = fingerprint(str(link))
    assert d["kind"] == "dir" and d["resolved"] == str(tmp_path)  # symlinks resolved
    assert set(d["entries"]) == {"config.json", "w.bin", "link"}
    assert d["entries"]["config.json"]["size"] == 2


def test_the_same_files_agree_and_a_changed_one_differs(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    data = tmp_path / "train.parquet"
    data.write_bytes(b"PAR1")
    a = _report({"--model /m": fingerprint(str(model)), "--train /t": fingerprint(str(data))})
    b = _report({"--model /m": fingerprint(str(model)), "--train /t": fingerprint(str(data))}, host="b")
    assert [v for _i, _c, v in rows({"n0": a, "n1": b})] == ["ok", "ok", "ok", "ok"]
    (model / "config.json").write_text('{"a": 2}')  # another copy on the second node, edited
    c = _report({"--model /m": fingerprint(str(model)), "--train /t": fingerprint(str(data))})
    table = rows({"n0": a, "n1": c})
    assert [(i, v) for i, _c, v in table] == [("dry run", "ok"), ("veRL plug-ins", "ok"),
                                              ("--model /m", "DIFFERS"), ("--train /t", "ok")]
    text = render({"n0": a, "n1": c}, table)
    assert text.splitlines()[0].split() == ["item", "n0", "n1", "verdict"]
    assert "DIFFERS" in text.splitlines()[4]


def test_missing_path_failed_dry_run_unseen_token_and_plugins_fail(tmp_path: Path) -> None:
    present = fingerprint(str(tmp_path))
    a = _report({"--val /v": present, "--out shared": {"kind": "token", "seen": True}})
    b = _report({"--val /v": {"kind": "missing"}, "--out shared": {"kind": "token", "seen": False}}, rc=2,
                grpo_no_std=False)
    verdicts = {i: v for i, _c, v in rows({"n0": a, "n1": b})}
    assert verdicts == {"dry run": "FAILS", "veRL plug-ins": "FAILS", "--val /v": "FAILS", "--out shared": "FAILS"}
    # a path one node does not report at all counts as missing there
    verdicts = {i: v for i, _c, v in rows({"n0": a, "n1": _report({})})}
    assert verdicts["--val /v"] == "FAILS"


def test_a_file_replaced_on_one_node_differs(tmp_path: Path) -> None:
    f = tmp_path / "rl3_train.parquet"
    f.write_bytes(b"x" * 100)
    before = fingerprint(str(f))
    os.utime(f, (0, 0))  # mtime alone is not compared: rsync'd or downloaded copies agree
    assert fingerprint(str(f)) == before
    f.write_bytes(b"y" * 100)
    assert fingerprint(str(f)) != before


def test_dry_run_problems_drop_the_warnings_around_them() -> None:
    # a node's dry-run stderr as the two-node test saw it (a veRL warning, then the problem)
    stderr = ("/tmp/ray/_ray_pkg_a7f3/emocaliber_rl/recipe_dry_run.py:68: UserWarning: Disabled critic as "
              "algorithm.adv_estimator != gae. If it is not intended, please set critic.enable=True\n"
              "  validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg))\n"
              "[stage3_grpo] data.val_files=/d/no_such_val.parquet: no such file\n")
    assert dry_run_problems(stderr, 2) == ["[stage3_grpo] data.val_files=/d/no_such_val.parquet: no such file"]
    assert dry_run_problems(stderr, 0) == []
    assert dry_run_problems("stage3_grpo.sh: --nnodes must be a positive integer\n", 2) == [
        "stage3_grpo.sh: --nnodes must be a positive integer"]


def test_python_by_name_or_path(tmp_path: Path, monkeypatch) -> None:
    import sys

    from emocaliber_rl.cluster_check import venv_print

    assert venv_print(str(tmp_path / "bin" / "python")) == {"kind": "missing"}
    by_path = venv_print(sys.executable)
    assert by_path["kind"] == "python" and by_path["distributions"] > 0
    exe = Path(sys.executable)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert venv_print(exe.name) == by_path  # looked up on PATH, as the job's shell would
