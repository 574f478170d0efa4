"""The working_dir package of a Ray job (recipes/submit_stage*.sh): what it leaves out, and a size
check made before anything is uploaded.

Ray packs a job's working_dir into one zip and refuses it on upload when it reaches
``ray._private.runtime_env.packaging.GCS_STORAGE_MAX_SIZE`` (512 MiB, the gRPC message limit;
``RAY_max_grpc_message_size`` changes it) with "exceeds the maximum size of 512.00MiB", by then
after zipping and starting the upload. The check here walks the directory with Ray's own
traversal (``_dir_travel``: the runtime_env ``excludes``, then every ``.gitignore`` unless
``RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1``, and every ``.rayignore``, exactly as ``ray job submit``
applies them) and, only when the files could reach the limit, builds the zip with Ray's own
``create_package`` to measure it. Both are private Ray 2.60 APIs: ``ray[default]==2.60.0`` is pinned.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# Output and data folders the docs use, anchored to the working dir's root (gitwildmatch, as Ray
# reads them) so that a package folder such as emocaliber_rl/data/ is not caught.
OUTPUT_DIRS: tuple[str, ...] = (
    "/ckpt/", "/checkpoints/", "/runs/", "/outputs/", "/reports/", "/models/",
    "/tensorboard_log/", "/wandb/",
)
DATA_DIRS: tuple[str, ...] = ("/data/", "/VEC-CoT/", "/images/")
TOOL_DIRS: tuple[str, ...] = (
    ".venv/", ".git/", "__pycache__/", ".pytest_cache/", ".ruff_cache/", ".hypothesis/", "*.egg-info/",
)
JOB_EXCLUDES: tuple[str, ...] = (*TOOL_DIRS, *OUTPUT_DIRS, *DATA_DIRS)

# Zip overhead per member beyond its data: local header (30 B) + central directory entry (46 B)
# + the name twice + data descriptor / extra fields; 128 B covers Ray's ZipFile.write entries.
_ZIP_MEMBER_OVERHEAD = 128

# Ray logs every .gitignore/.rayignore it applies at INFO; a size check needs only its warnings.
_QUIET = logging.getLogger("emocaliber_rl.ray_package.ray")
_QUIET.setLevel(logging.WARNING)


def ray_package_limit() -> int:
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return int(GCS_STORAGE_MAX_SIZE)


def _include_gitignore() -> bool:
    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE

    return os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"


@dataclass
class PackageSize:
    """What Ray would pack from ``working_dir``: files, sizes and the biggest entries."""

    working_dir: Path
    limit: int
    n_files: int = 0
    raw_bytes: int = 0
    zip_bytes: int | None = None  # measured only when the raw bytes could reach the limit
    top_level: dict[str, int] = field(default_factory=dict)  # "ckpt/" or "setup.py" -> raw bytes
    largest_files: list[tuple[str, int]] = field(default_factory=list)

    @property
    def package_bytes(self) -> int:
        """The zip's size, or an upper bound of it (raw bytes + zip overhead) when not zipped."""
        if self.zip_bytes is not None:
            return self.zip_bytes
        return self.raw_bytes + self.n_files * _ZIP_MEMBER_OVERHEAD

    @property
    def fits(self) -> bool:
        # Ray refuses len(data) >= GCS_STORAGE_MAX_SIZE (packaging._store_package_in_gcs).
        return self.package_bytes < self.limit

    def biggest(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.top_level.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def refusal(self) -> str:
        mib = 1024 ** 2
        kind = "zipped" if self.zip_bytes is not None else "at most"
        lines = [
            (f"the job package of {self.working_dir} would be {self.package_bytes / mib:.2f} MiB ({kind}; "
            f"{self.n_files} files), over Ray's limit of {self.limit / mib:.2f} MiB: not submitted, nothing uploaded."),
            "Biggest entries: " + ", ".join(f"{name} {size / mib:.1f} MiB" for name, size in self.biggest()),
            "Largest files: " + ", ".join(f"{name} {size / mib:.1f} MiB" for name, size in self.largest_files[:3]),
            ("Move them out of the repository, or list them in .rayignore (or .gitignore); the job's "
            f"excludes already leave out {', '.join(OUTPUT_DIRS + DATA_DIRS)}."),
        ]
        return "\n".join(lines)


def measure_package(working_dir: str | os.PathLike, excludes: tuple[str, ...] | list[str] = JOB_EXCLUDES,
                    *, limit: int | None = None) -> PackageSize:
    """Walk ``working_dir`` as Ray packs it; zip it with Ray's packager if it could reach ``limit``."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes, create_package

    root = Path(working_dir).absolute()
    if not root.is_dir():
        raise NotADirectoryError(f"working_dir {root} is not a directory")
    result = PackageSize(working_dir=root, limit=ray_package_limit() if limit is None else limit)
    include_gitignore = _include_gitignore()
    files: list[tuple[str, int]] = []

    def handler(path: Path) -> None:
        if path.is_file():
            rel = path.relative_to(root)
            size = path.stat().st_size
            result.n_files += 1
            result.raw_bytes += size
            top = rel.parts[0] + ("/" if len(rel.parts) > 1 else "")
            result.top_level[top] = result.top_level.get(top, 0) + size
            files.append((str(rel), size))

    _dir_travel(root, [_get_excludes(root, list(excludes))], handler, include_gitignore=include_gitignore,
                logger=_QUIET)
    result.largest_files = sorted(files, key=lambda kv: (-kv[1], kv[0]))[:3]
    if not result.fits:
        with tempfile.TemporaryDirectory(prefix="emocaliber-raypkg-") as tmp:
            target = Path(tmp) / "package.zip"
            create_package(str(root), target, include_gitignore=include_gitignore, excludes=list(excludes),
                           logger=_QUIET)
            result.zip_bytes = target.stat().st_size
            with zipfile.ZipFile(target) as zf:
                zipped: dict[str, int] = {}
                for info in zf.infolist():
                    parts = info.filename.split("/")
                    top = parts[0] + ("/" if len(parts) > 1 else "")
                    zipped[top] = zipped.get(top, 0) + info.compress_size
            result.top_level = zipped
    return result


def job_runtime_env(working_dir: str | os.PathLike, env_vars: dict[str, str]) -> dict:
    return {"working_dir": str(Path(working_dir).absolute()), "excludes": list(JOB_EXCLUDES), "env_vars": env_vars}
