"""The veRL plug-ins: the cpu platform, the backend-string collapse, the equal-length
position_ids fix (a veRL bug that hits GPU runs too) and the module-freezing switch."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch
from tensordict import TensorDict

from emocaliber_rl.verl_plugins.cpu_platform import collapse_backend


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("cpu:gloo,cpu:gloo", "gloo"),
        ("cpu:gloo,cuda:nccl", "cpu:gloo,cuda:nccl"),
        ("gloo", "gloo"),
        (None, None),
        ("cpu:gloo,cpu:mpi", "cpu:gloo,cpu:mpi"),  # a real conflict is left for torch to report
    ],
)
def test_collapse_backend(given, expected):
    assert collapse_backend(given) == expected


def _run(code: str, **env) -> str:
    import os

    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_cpu_platform_selected_by_env_and_loaded_by_entry_point():
    # No VERL_USE_EXTERNAL_MODULES: veRL must find the plug-in through its entry point.
    out = _run(
        "import verl, torch\n"
        "from verl.utils.device import get_device_name, get_nccl_backend, get_device_id, get_torch_device\n"
        "from verl.plugin.platform import get_platform\n"
        "print(get_device_name(), get_nccl_backend(), get_device_id(), type(get_platform()).__name__)\n"
        "print(torch.zeros(2).to(get_device_id()).device)\n"
        "print(get_torch_device().mem_get_info()[1] > 0)\n",
        VERL_PLATFORM="cpu", VERL_USE_EXTERNAL_MODULES="",
    )
    assert out.split() == ["cpu", "gloo", "cpu", "PlatformCPU", "cpu", "True"]


def test_gloo_group_from_verl_backend_string():
    # veRL's own initialize_global_process_group builds "cpu:gloo,cpu:gloo" on this platform.
    out = _run(
        "import verl, torch.distributed as dist\n"
        "from verl.utils.distributed import initialize_global_process_group\n"
        "print(initialize_global_process_group())\n"
        "print(dist.get_backend())\n",
        VERL_PLATFORM="cpu", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1", MASTER_PORT="29631",
    )
    assert out.split()[-1] == "gloo"


def test_cpu_platform_not_auto_selected():
    out = _run("from verl.plugin.platform import get_platform\nprint(get_platform().device_name)\n",
               VERL_PLATFORM="")
    assert out.strip() == "cuda"  # veRL's own fallback when nothing is selected


def _equal_length_vlm_batch(batch: int = 3, length: int = 7) -> TensorDict:
    """A left-right padded VLM batch whose sequences all have the same length (no padding)."""
    prompt = 4
    input_ids = torch.arange(batch * length).reshape(batch, length) % 50
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    response_mask = torch.ones(batch, length - prompt, dtype=torch.long)
    # mrope ids (text + 3 rope axes), distinct per sample so a mix-up is detectable
    position_ids = torch.stack(
        [torch.arange(length).repeat(4, 1) + 100 * b + 1000 * torch.arange(4)[:, None] for b in range(batch)]
    )
    return TensorDict(
        {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask,
         "position_ids": position_ids},
        batch_size=[batch],
    ), position_ids


def test_equal_length_position_ids_regression():
    import verl  # noqa: F401  (loads the plug-ins)
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    from emocaliber_rl.verl_plugins import position_ids_fix

    assert tu.maybe_fix_3d_position_ids.__code__ is position_ids_fix.maybe_fix_3d_position_ids.__code__
    assert position_ids_fix.ORIGINAL_CODE is not None

    # veRL's own function on this batch breaks the actor update's index_select.
    data, _ = _equal_length_vlm_batch()
    data = left_right_2_no_padding(data)
    verl_original = types.FunctionType(position_ids_fix.ORIGINAL_CODE, tu.__dict__)
    verl_original(data)
    with pytest.raises(RuntimeError):  # "split_with_sizes expects ..." or a failed size check
        tu.index_select_tensor_dict(data, [2, 0])

    # With the fix, selection works and returns each sample's own (4, L) ids.
    data, expected = _equal_length_vlm_batch()
    data = left_right_2_no_padding(data)
    tu.maybe_fix_3d_position_ids(data)
    picked = tu.index_select_tensor_dict(data, [2, 0])
    got = picked["position_ids"].unbind()
    assert torch.equal(got[0], expected[2]) and torch.equal(got[1], expected[0])


def test_unequal_lengths_behave_as_verl():
    import verl  # noqa: F401
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    data, expected = _equal_length_vlm_batch()
    data["attention_mask"][0, -2:] = 0  # sample 0 is two tokens shorter
    data["response_mask"][0, -2:] = 0
    data = left_right_2_no_padding(data)
    tu.maybe_fix_3d_position_ids(data)
    assert data["position_ids"]._ragged_idx == 2
    got = tu.index_select_tensor_dict(data, [0, 1])["position_ids"].unbind()
    assert torch.equal(got[0], expected[0][:, :-2]) and torch.equal(got[1], expected[1])


def test_freeze_modules_rejects_unknown_names():
    from emocaliber_rl.verl_plugins.frozen_modules import freeze_modules

    model = torch.nn.Sequential()
    model.add_module("visual", torch.nn.Linear(2, 2))
    model.add_module("lm", torch.nn.Linear(2, 2))
    assert freeze_modules(model, ["visual"]) == 6
    assert not model.visual.weight.requires_grad and model.lm.weight.requires_grad
    with pytest.raises(ValueError, match="vision_tower"):
        freeze_modules(model, ["vision_tower"])


def test_rollout_servers_get_a_fixed_kv_cache(monkeypatch):
    from emocaliber_rl.verl_plugins.cpu_platform import PlatformCPU

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert PlatformCPU().rollout_env_vars() == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    assert PlatformCPU().rollout_env_vars() == {"VLLM_CPU_KVCACHE_SPACE": "3"}


def test_blockwise_logprobs_equal_verls_row_loop() -> None:
    """The CPU plug-in's log-probabilities equal veRL's own per-row function, values and gradients
    (fp32, more rows than one block, a 3-D batch too)."""
    import torch
    import verl.utils.torch_functional as tf

    from emocaliber_rl.verl_plugins.cpu_logprobs import ROWS, blockwise_logprobs

    original = getattr(tf.logprobs_from_logits_v2, "__wrapped__", tf.logprobs_from_logits_v2)
    torch.manual_seed(0)
    for shape in ((2 * ROWS + 7, 503), (3, 5, 211)):
        x = torch.randn(*shape, dtype=torch.float32, requires_grad=True)
        labels = torch.randint(0, shape[-1], shape[:-1])
        ref = original(x, labels)
        (g_ref,) = torch.autograd.grad(ref.sum(), x)
        got = blockwise_logprobs(x, labels, original)
        (g_got,) = torch.autograd.grad(got.sum(), x)
        assert got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(g_got, g_ref, atol=1e-6)
    bf16 = torch.randn(4, 17, dtype=torch.bfloat16)
    assert torch.equal(blockwise_logprobs(bf16, torch.zeros(4, dtype=torch.long), original),
                       original(bf16, torch.zeros(4, dtype=torch.long)))  # bf16 keeps veRL's path


def test_blockwise_logprobs_installed_on_the_cpu_platform_only() -> None:
    code = ("import verl.utils.torch_functional as tf; "
            "print(getattr(tf.logprobs_from_logits_v2, '_emocaliber_blockwise', False))")
    for platform, want in (("cpu", "True"), ("", "False")):
        env = {**os.environ, "VERL_PLATFORM": platform}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == want, (platform, out.stdout, out.stderr[-2000:])
