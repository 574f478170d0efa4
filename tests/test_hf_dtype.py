"""The HF copy of a checkpoint in EMOCALIBER_HF_DTYPE (emocaliber_rl/verl_plugins/hf_dtype.py): the
plug-in, imported as veRL imports it, changes the full state dict veRL's FSDP checkpoint manager
writes its hf_model copy from; without the variable that copy stays veRL's fp32."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import REPO_ROOT

CODE = """
import importlib, json, torch
import emocaliber_rl.verl_plugins  # what veRL's plug-in entry point imports
manager = importlib.import_module("verl.utils.checkpoint.fsdp_checkpoint_manager")
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
sd = manager.get_fsdp_full_state_dict(net, offload_to_cpu=True, rank0_only=True)
ref = net.state_dict()
print(json.dumps({"dtypes": {k: str(v.dtype) for k, v in sd.items()},
                  "same_values": all(torch.equal(sd[k], ref[k].to(sd[k].dtype)) for k in ref)}))
"""


def _run(value: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("EMOCALIBER_HF_DTYPE", None)
    env.pop("EMOCALIBER_VERL_PLUGINS", None)
    if value is not None:
        env["EMOCALIBER_HF_DTYPE"] = value
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_hf_copy_in_bf16_and_fp32_without_the_variable() -> None:
    for value, dtype in (("bfloat16", "torch.bfloat16"), (None, "torch.float32")):
        proc = _run(value)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["dtypes"] == {"0.weight": dtype, "0.bias": dtype, "1.weight": dtype, "1.bias": dtype,
                                 "1.running_mean": dtype, "1.running_var": dtype,
                                 "1.num_batches_tracked": "torch.int64"}, value  # integer buffers keep their type
        assert out["same_values"]


def test_unknown_dtype_is_an_error() -> None:
    proc = _run("bf16")
    assert proc.returncode != 0
    assert "EMOCALIBER_HF_DTYPE='bf16': expected one of bfloat16, float16, float32" in proc.stderr
