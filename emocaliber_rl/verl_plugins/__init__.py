"""veRL plug-ins of emocaliber-rl, imported by veRL itself in every process.

veRL imports this package through its ``verl.plugins`` entry point (declared in setup.py) and,
equivalently, through ``VERL_USE_EXTERNAL_MODULES=emocaliber_rl.verl_plugins``; no veRL file is
edited. What it does on import:

* always: registers the ``grpo_no_std`` advantage estimator (``advantage.py``) and the ``cpu``
  platform class (inactive unless selected), and installs the equal-length position_ids fix
  (``position_ids_fix.py``), which protects GPU runs too, and the ``EMOCALIBER_FREEZE_MODULES``
  switch of veRL's FSDP engine (``frozen_modules.py``; stages 1-2 freeze the vision tower), and
  calibration metrics (ECE, Brier, ROC-AUC, confidence histogram) in the PPO trainers' validation
  metrics (``validation_calibration.py``), and a warning in the training log when the vLLM
  rollouts and the actor disagree (``rollout_parity.py``), and the HF copy of each checkpoint in
  ``EMOCALIBER_HF_DTYPE`` when set (``hf_dtype.py``; the GPU profiles set bfloat16);
* with ``VERL_PLATFORM=cpu``: activates the CPU platform (gloo process groups, FSDP engines for
  the ``cpu`` device) and, in vLLM rollout workers, vLLM's plain-linear weights so veRL's weight
  sync works (``vllm_cpu_weights.py``), and veRL's token log-probabilities without its per-token
  loop (``cpu_logprobs.py``; the loop was most of a training step with Qwen's vocabulary), and
  SFT and PPO steps that run the output layer only at the rows the loss reads (``loss_rows.py``).

Set ``EMOCALIBER_VERL_PLUGINS=0`` to make this package do nothing.
"""

from __future__ import annotations

import os

from emocaliber_rl.verl_plugins import (
    advantage,
    cpu_logprobs,
    frozen_modules,
    hf_dtype,
    loss_rows,
    position_ids_fix,
    rollout_parity,
    validation_calibration,
    vllm_cpu_weights,
)
from emocaliber_rl.verl_plugins.cpu_platform import activate, cpu_platform_selected
from emocaliber_rl.verl_plugins.import_hooks import when_imported

if os.environ.get("EMOCALIBER_VERL_PLUGINS", "1") != "0":
    when_imported("verl.trainer.ppo.core_algos", advantage.register)
    when_imported("verl.utils.tensordict_utils", position_ids_fix.install)
    when_imported("verl.workers.engine.fsdp.transformer_impl", frozen_modules.install)
    when_imported("verl.utils.checkpoint.fsdp_checkpoint_manager", hf_dtype.install)
    when_imported("verl.trainer.ppo.v1.trainer_base", validation_calibration.install_v1)
    when_imported("verl.trainer.ppo.v1.trainer_base", rollout_parity.install_v1)
    when_imported("verl.trainer.ppo.ray_trainer", validation_calibration.install_legacy)
    if cpu_platform_selected():
        activate()
        when_imported("vllm.model_executor.layers.utils", vllm_cpu_weights.install)
        when_imported("verl.utils.torch_functional", cpu_logprobs.install)
        when_imported("verl.workers.engine.fsdp.transformer_impl", loss_rows.install)
