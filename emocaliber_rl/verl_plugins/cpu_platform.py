"""A ``cpu`` platform for veRL 0.9.1, registered in its ``PlatformRegistry``.

veRL 0.9.1 knows only NVIDIA, Ascend and ROCm platforms and falls back to ``nvidia`` (NCCL) on a
CPU-only machine, so ``torchrun -m verl.trainer.sft_trainer`` dies with "ProcessGroupNCCL is only
supported with GPUs". This platform is selected with ``VERL_PLATFORM=cpu`` and gives veRL:

* device ``cpu`` with a ``torch.cuda``-shaped device module (memory queries answer from psutil;
  streams, caches and seeds map to their CPU meanings);
* ``current_device()`` returning the string ``"cpu"``: veRL passes it to ``.to()`` and
  ``torch.device()``, where the integer 0 would mean ``cuda:0``;
* gloo collectives. veRL asks torch for ``"cpu:gloo,<device>:<backend>"``, i.e.
  ``"cpu:gloo,cpu:gloo"``, which torch rejects ("Duplicate device type cpu"); the
  ``init_process_group`` wrapper below collapses repeated device entries;
* Ray resource name ``GPU``: veRL's resource-pool check counts only GPU/NPU resources, so on CPU
  the Ray cluster is started with logical GPUs (``ray_init.num_gpus``), one per trainer rank;
* no CUDA IPC: weight sync to the rollout server takes veRL's shared-memory path;
* a fixed vLLM KV cache for rollout servers (``VLLM_CPU_KVCACHE_SPACE``, GiB, default 1): with a
  fraction of host RAM instead, vLLM refuses to start when other processes hold memory;
* veRL's FSDP engines (registered for ``cuda``/``npu`` only) registered for ``cpu`` too, through
  ``EngineRegistry.register``, as soon as their module is imported;
* FSDP2's ``CPUOffloadPolicy`` without pinned memory in that engine: veRL builds every
  forward-only model (the reference policy of a KL loss) with ``CPUOffloadPolicy(pin_memory=True)``,
  and pinning needs an accelerator ("Cannot access accelerator device when none is available").
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from emocaliber_rl.verl_plugins.import_hooks import when_imported

PLATFORM_NAME = "cpu"


def cpu_platform_selected() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


class _CPUDeviceModule(ModuleType):
    """The subset of ``torch.cuda`` that veRL calls through ``get_torch_device()``."""

    def __init__(self) -> None:
        super().__init__("emocaliber_cpu_device")
        self.Stream = torch.cpu.Stream
        self.Event = getattr(torch.cpu, "Event", SimpleNamespace)
        self._rng_state = None

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def current_device(self) -> str:
        return "cpu"

    def set_device(self, device: Any) -> None:
        return None

    def get_device_name(self, device: Any = None) -> str:
        return "cpu"

    def synchronize(self, device: Any = None) -> None:
        return None

    def current_stream(self, device: Any = None):
        return torch.cpu.current_stream()

    def stream(self, stream: Any = None):
        return torch.cpu.stream(stream)

    def empty_cache(self) -> None:
        return None

    def ipc_collect(self) -> None:
        return None

    def set_per_process_memory_fraction(self, fraction: float, device: Any = None) -> None:
        return None

    def get_rng_state(self, device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(self, state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        import psutil

        vm = psutil.virtual_memory()
        return vm.available, vm.total

    def _rss(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def memory_allocated(self, device: Any = None) -> int:
        return self._rss()

    def memory_reserved(self, device: Any = None) -> int:
        return self._rss()

    def max_memory_allocated(self, device: Any = None) -> int:
        return self._rss()

    def max_memory_reserved(self, device: Any = None) -> int:
        return self._rss()

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        return None


_DEVICE_MODULE = _CPUDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """veRL platform for CPU-only machines (gloo collectives, host memory)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return _DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-selected: a CPU-only Ray actor on a GPU cluster must stay on the GPU platform.
        return cpu_platform_selected()

    def current_device(self) -> str:  # type: ignore[override]
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for actors holding logical GPUs; veRL reads rank/device
        # bookkeeping from it.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        # vLLM's CPU worker otherwise reserves gpu_memory_utilization x host RAM for its KV cache
        # and refuses to start ("Available memory ... is less than desired CPU memory
        # utilization") whenever other processes hold that much; a fixed size skips that check.
        return {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}

    def cudart(self) -> Any:
        return None


def collapse_backend(backend: str | None) -> str | None:
    """``"cpu:gloo,cpu:gloo"`` -> ``"gloo"``; other backend strings unchanged.

    torch accepts either one backend name or ``device:backend`` pairs with distinct devices.
    """
    if not backend or "," not in backend:
        return backend
    pairs = [part.split(":", 1) for part in backend.split(",")]
    if any(len(p) != 2 for p in pairs):
        return backend
    seen: dict[str, str] = {}
    for device, name in pairs:
        if device in seen and seen[device] != name:
            return backend  # a genuine conflict: let torch report it
        seen.setdefault(device, name)
    if len(seen) == 1:
        return next(iter(seen.values()))
    return ",".join(f"{d}:{b}" for d, b in seen.items())


def _wrap_init_process_group() -> None:
    import torch.distributed as dist

    original = dist.init_process_group
    if getattr(original, "_emocaliber_wrapped", False):
        return

    @functools.wraps(original)
    def init_process_group(*args: Any, **kwargs: Any):
        if "backend" in kwargs:
            kwargs["backend"] = collapse_backend(kwargs["backend"])
        elif args:
            args = (collapse_backend(args[0]), *args[1:])
        return original(*args, **kwargs)

    init_process_group._emocaliber_wrapped = True  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group


def _register_fsdp_engines_for_cpu(module: ModuleType) -> None:
    from verl.workers.engine.base import EngineRegistry

    for model_type, backends in EngineRegistry._engines.items():
        for backend, by_device in backends.items():
            if not backend.startswith("fsdp") or PLATFORM_NAME in by_device:
                continue
            engine_cls = by_device.get("cuda")
            if engine_cls is not None:
                EngineRegistry.register(model_type=model_type, backend=backend, device=PLATFORM_NAME)(
                    engine_cls
                )


def _unpinned_cpu_offload_policy(module: ModuleType) -> None:
    policy_cls = module.CPUOffloadPolicy
    if policy_cls is None or getattr(policy_cls, "_emocaliber_unpinned", False):
        return

    class UnpinnedCPUOffloadPolicy(policy_cls):  # type: ignore[misc, valid-type]
        """``CPUOffloadPolicy`` whose ``pin_memory`` is always False (no accelerator to pin for)."""

        _emocaliber_unpinned = True

        def __init__(self, pin_memory: bool = False) -> None:
            super().__init__(pin_memory=False)

    module.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy


def activate() -> None:
    """Apply the process-wide pieces; called by the plug-in when ``VERL_PLATFORM=cpu``."""
    _wrap_init_process_group()
    when_imported("verl.workers.engine.fsdp.transformer_impl", _register_fsdp_engines_for_cpu)
    when_imported("verl.workers.engine.fsdp.transformer_impl", _unpinned_cpu_offload_policy)
