"""Building mamba-ssm's CUDA extension for the GPU architectures asked for only.

mamba-ssm ships only a source distribution. Its setup.py appends a fixed list of ``-gencode`` flag
pairs to nvcc's options (sm_75 up to sm_121, depending on the CUDA version), and because those flags
contain "arch", ``torch.utils.cpp_extension`` then adds none of its own: ``TORCH_CUDA_ARCH_LIST`` is
ignored and every kernel is compiled once per listed architecture. Here the sdist is unpacked, every
such pair in its setup.py is replaced by the pairs of the architectures asked for (by default those of
the visible GPUs), and the result is built with ``pip wheel --no-build-isolation`` against the
installed torch. ``MAMBA_FORCE_BUILD=TRUE`` stops setup.py from first trying to download a prebuilt
wheel from GitHub, which an offline machine cannot (its error would not be caught there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .pip import check, run_pip

# The release whose setup.py the patch below was written against; other releases work as long as their
# setup.py lists its architectures the same way (restrict_architectures says when one does not).
MAMBA_SSM_VERSION = "2.3.2.post1"
MARK = "nnunetv2-segresmamba"
# What `import mamba_ssm` needs besides torch and triton (the wheel itself is installed without dependencies).
RUNTIME_DEPENDENCIES = ["einops", "transformers"]

# One architecture of mamba-ssm's list: two appends to cc_flag on consecutive lines.
GENCODE_PAIR = re.compile(
    r'^(?P<indent>[ \t]*)cc_flag\.append\(\s*"-gencode"\s*\)[ \t]*\r?\n'
    r'[ \t]*cc_flag\.append\(\s*"arch=compute_(?P<arch>\w+),code=sm_\w+"\s*\)[ \t]*$',
    re.MULTILINE)


class MambaBuildError(RuntimeError):
    """mamba-ssm cannot be built here, or its build failed; the message says why and what to do."""


def parse_architecture(value: str) -> str:
    """A compute capability as nvcc names it: ``9.0``, ``90``, ``sm_90`` -> ``90``; ``12.0`` -> ``120``;
    ``9.0a`` -> ``90a`` (the architecture-specific variant)."""
    match = re.fullmatch(r"(?:sm_|compute_)?(\d{1,2})\.(\d)([af]?)", value.strip()) or \
        re.fullmatch(r"(?:sm_|compute_)?(\d{1,2})(\d)([af]?)", value.strip())
    if not match:
        raise ValueError(f"GPU architecture {value!r}: expected a compute capability such as 8.0, 8.6 or 9.0")
    major, minor, suffix = match.groups()
    return f"{int(major)}{minor}{suffix}"


def gencode_flags(architectures: list[str]) -> list[str]:
    """nvcc flags that compile real code for each architecture (``90`` -> ``-gencode arch=compute_90,code=sm_90``)."""
    if not architectures:
        raise ValueError("no GPU architecture to build for")
    flags = []
    for arch in dict.fromkeys(architectures):
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return flags


def listed_architectures(setup_py: str) -> list[str]:
    """The architectures the unpatched setup.py compiles for (each only where its CUDA version allows)."""
    return [match.group("arch") for match in GENCODE_PAIR.finditer(setup_py)]


def restrict_architectures(setup_py: str, architectures: list[str]) -> str:
    """setup.py's text with its own architecture list replaced by ``architectures``.

    The least indented pair (the unconditional part of the CUDA branch) becomes one ``cc_flag +=`` of
    our flags; every other pair, some of them inside ``if bare_metal_version >= ...`` blocks, becomes
    ``pass`` so that those blocks stay valid Python. Raises MambaBuildError when the text does not have
    the expected form, instead of building for every architecture unnoticed.
    """
    pairs = list(GENCODE_PAIR.finditer(setup_py))
    if not pairs:
        raise MambaBuildError(
            "mamba-ssm's setup.py has no `cc_flag.append(\"-gencode\")` lines in the expected form (another "
            f"release than {MAMBA_SSM_VERSION}?), so its architecture list cannot be replaced. Use "
            f"--mamba-version {MAMBA_SSM_VERSION}, or build it for all architectures with "
            "`MAMBA_FORCE_BUILD=TRUE pip install --no-build-isolation mamba-ssm`.")
    flags = gencode_flags(architectures)
    listed = [match.group("arch") for match in pairs]
    unconditional = min(pairs, key=lambda m: len(m.group("indent").expandtabs()))
    pieces, position = [], 0
    for match in pairs:
        indent = match.group("indent")
        if match is unconditional:
            line = f"{indent}cc_flag += {flags!r}  # {MARK}: instead of compute_{', '.join(listed)}"
        else:
            line = f"{indent}pass  # {MARK}: compute_{match.group('arch')} left out"
        pieces += [setup_py[position:match.start()], line]
        position = match.end()
    patched = "".join(pieces) + setup_py[position:]
    try:
        compile(patched, "setup.py", "exec")
    except SyntaxError as error:
        raise MambaBuildError(f"replacing mamba-ssm's architecture list broke its setup.py ({error})") from error
    return patched


def local_architectures() -> list[str]:
    """The compute capabilities of the GPUs this process sees (CUDA_VISIBLE_DEVICES applies)."""
    import torch

    if not torch.cuda.is_available():
        raise MambaBuildError("no CUDA GPU is visible here: name the architecture to build for with --arch "
                              "(e.g. 8.0 for A100, 8.6 for A40/RTX 3090, 8.9 for L40S/RTX 4090, 9.0 for H100/H200)")
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return [f"{major}{minor}" for major, minor in sorted(capabilities)]


def nvcc_version(cuda_home: str) -> str | None:
    """``12.8`` from ``nvcc -V``, or None when nvcc does not run."""
    try:
        output = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "-V"], capture_output=True, text=True).stdout
    except OSError:
        return None
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else None


def build_problems(need_gpu: bool) -> list[str]:
    """Why mamba-ssm cannot be built in this environment (empty when it can), each with what to do."""
    problems = []
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME
    except ImportError:
        return ["torch is not installed: install a CUDA build of torch first"]
    if torch.version.cuda is None:
        problems.append(f"torch {torch.__version__} is not a CUDA build: install one (see pytorch.org)")
    if CUDA_HOME is None:
        problems.append("nvcc (the CUDA toolkit) was not found: install the CUDA toolkit matching "
                        f"torch's CUDA {torch.version.cuda}, or set CUDA_HOME to it (e.g. `module load cuda`)")
    elif not os.path.isfile(os.path.join(CUDA_HOME, "include", "cuda_runtime.h")):
        problems.append(f"CUDA_HOME={CUDA_HOME} has no include/cuda_runtime.h: set CUDA_HOME to the CUDA "
                        "toolkit's own folder (e.g. /usr/local/cuda)")
    elif torch.version.cuda is not None:
        found = nvcc_version(CUDA_HOME)
        if found is None:
            problems.append(f"{CUDA_HOME}/bin/nvcc does not run: set CUDA_HOME to a working CUDA toolkit")
        elif found.split(".")[0] != torch.version.cuda.split(".")[0]:
            problems.append(f"nvcc in {CUDA_HOME} is CUDA {found}, torch was built with CUDA {torch.version.cuda}: "
                            "the major versions must match (set CUDA_HOME to a matching toolkit)")
    if need_gpu and not torch.cuda.is_available():
        problems.append("no CUDA GPU is visible to tell the architecture: pass --arch (e.g. 9.0)")
    for module, package in (("setuptools", "setuptools"), ("wheel", "wheel"), ("packaging", "packaging"),
                            ("ninja", "ninja")):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"{package} is not installed (mamba-ssm builds without build isolation): "
                            f"pip install {package}")
    return problems


def fetch_sdist(directory: Path, version: str = MAMBA_SSM_VERSION) -> Path:
    """Downloads mamba-ssm's sdist from the package index into ``directory``. pip reads its metadata by running
    its setup.py, which imports torch: this environment needs torch (a CPU build will do)."""
    try:
        import torch  # noqa: F401  (only whether it imports)
    except ImportError as error:
        raise MambaBuildError("downloading mamba-ssm's source runs its setup.py, which imports torch: run this "
                              "where torch is installed (a CPU build will do), or leave mamba-ssm out") from error
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MAMBA_SKIP_CUDA_BUILD="TRUE")  # metadata only: no nvcc needed to download
    check(run_pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "-d", directory,
                  f"mamba-ssm=={version}", env=env), f"downloading mamba-ssm {version}'s source")
    found = sorted(directory.glob(f"mamba_ssm-{version}.tar.gz"))
    if not found:
        raise MambaBuildError(f"pip reported success but no mamba_ssm-{version}.tar.gz is in {directory}")
    return found[0]


def unpack(sdist: Path, destination: Path) -> Path:
    """The sdist's top folder (the one with setup.py), unpacked under ``destination``."""
    with tarfile.open(sdist) as archive:
        if sys.version_info >= (3, 12):
            archive.extractall(destination, filter="data")
        else:  # the sdist comes from the package index or the user's own bundle
            archive.extractall(destination)
    tops = [path.parent for path in destination.glob("*/setup.py")]
    if len(tops) != 1:
        raise MambaBuildError(f"{sdist} does not look like mamba-ssm's source (no single */setup.py)")
    return tops[0]


@dataclass
class BuiltWheel:
    path: Path
    architectures: list[str]
    listed: list[str]  # what mamba-ssm's own setup.py lists
    seconds: float


def build_wheel(sdist: Path, architectures: list[str], wheel_dir: Path, jobs: int | None = None,
                log: Path | None = None) -> BuiltWheel:
    """Builds mamba-ssm's wheel from ``sdist`` for ``architectures`` only, into ``wheel_dir``."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mamba_ssm_build_") as work:
        source = unpack(sdist, Path(work))
        setup_py = source / "setup.py"
        original = setup_py.read_text()
        setup_py.write_text(restrict_architectures(original, architectures))
        env = dict(os.environ, MAMBA_FORCE_BUILD="TRUE")
        if jobs:
            env["MAX_JOBS"] = str(jobs)  # ninja's parallel compile jobs (each nvcc can take GBs of memory)
        before = set(wheel_dir.glob("mamba_ssm-*.whl"))
        start = time.perf_counter()
        result = run_pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheel_dir, source,
                         env=env, quiet=False, log=log)
        seconds = time.perf_counter() - start
        check(result, f"building mamba-ssm for sm_{', sm_'.join(architectures)}",
              f"(the whole log: {log})" if log else "")
    built = sorted(set(wheel_dir.glob("mamba_ssm-*.whl")) - before) or sorted(wheel_dir.glob("mamba_ssm-*.whl"))
    if not built:
        raise MambaBuildError(f"pip reported success but wrote no mamba_ssm wheel into {wheel_dir}")
    return BuiltWheel(built[-1], list(architectures), listed_architectures(original), seconds)


def install_wheel(wheel: Path) -> None:
    """Installs the built wheel without its dependencies: SegResMamba uses only mamba-ssm's selective scan,
    whose import needs torch, triton, einops and transformers, not tilelang or quack-kernels (Mamba-3)."""
    check(run_pip("install", "--no-index", "--no-deps", "--force-reinstall", wheel), f"installing {wheel.name}")


# The scan registry's own check of the ``cuda`` backend, in a fresh interpreter: a wheel installed by this
# process is not seen by the imports this process has already tried.
_CHECK_CUDA_BACKEND = ("import sys\n"
                       "from nnunetv2_segresmamba.ssm.kernels import mamba_ssm_import_error\n"
                       "sys.exit(mamba_ssm_import_error())")


def _import_error(statement: str) -> str | None:
    result = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


def scan_import() -> str | None:
    """None when the selective scan that SegResMamba calls imports in a fresh interpreter (the compiled
    extension and mamba-ssm's Python side), else the error's last line."""
    return _import_error(_CHECK_CUDA_BACKEND)


def kernels_import() -> str | None:
    """None when mamba-ssm's kernels need no (re)build: what :func:`scan_import` checks."""
    return scan_import()


def install_runtime_dependencies() -> None:
    """einops and transformers, which ``import mamba_ssm`` needs (already there: pip does not ask the index)."""
    check(run_pip("install", *RUNTIME_DEPENDENCIES), f"installing {' and '.join(RUNTIME_DEPENDENCIES)}",
          "Without a package index, install them from a bundle (they are in every bundle with mamba-ssm).")


def copy_wheel(wheel: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(wheel, directory))
