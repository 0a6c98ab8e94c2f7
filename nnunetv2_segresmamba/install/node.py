"""Installing a bundle on a GPU node without a package index.

1. checks that the bundle was made for this Python (and, if it leaves torch out, that torch is here);
2. installs its wheels with ``pip install --no-index --find-links BUNDLE``;
3. builds mamba-ssm from the bundled source for this node's GPU architecture only (``mamba_build.py``),
   or says why it cannot (no GPU, no nvcc, ...) and goes on: SegResMamba then runs on its PyTorch scan;
4. verifies the installation in a fresh interpreter (``verify.py``).
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from . import mamba_build
from .bundle import BundleError, Manifest, read_manifest
from .pip import check, run_pip


def python_problem(manifest: Manifest) -> str | None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.python_version != here:
        return (f"the bundle is for Python {manifest.python_version}, this is Python {here} ({sys.executable}): "
                f"make a bundle with --python-version {here}, or run this with a Python {manifest.python_version}")
    return None


def torch_problem(manifest: Manifest) -> str | None:
    """Why the node's torch does not fit a bundle made with --existing-torch (None when it fits)."""
    if not manifest.existing_torch:
        return None
    wanted = manifest.existing_torch.split("+")[0]
    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return (f"the bundle leaves torch out (made with --existing-torch {manifest.existing_torch}), and this "
                "environment has no torch: install the node's torch first, or make a bundle that includes torch")
    if installed.split("+")[0] != wanted:
        return (f"the bundle was resolved for torch {wanted} (torchvision is pinned to it), this environment has "
                f"torch {installed}: make the bundle with --existing-torch {installed.split('+')[0]}")
    return None


def install_wheels(bundle: Path, manifest: Manifest) -> None:
    print(f"Installing {', '.join(manifest.install)} from {bundle} (no package index)", flush=True)
    check(run_pip("install", "--no-index", "--find-links", bundle, *manifest.install, quiet=False),
          "installing from the bundle",
          "If pip says a wheel is 'not supported', the bundle was made for another platform: make it with this "
          "node's --glibc (ldd --version) and CPU architecture.")


def build_mamba(bundle: Path, manifest: Manifest, architectures: list[str] | None, jobs: int | None,
                rebuild: bool) -> bool:
    """Builds and installs mamba-ssm for this node's GPUs. Returns whether its kernels now import; when they
    cannot be built here, says why and what to do instead of failing."""
    if manifest.mamba_ssm_sdist is None:
        print("mamba-ssm: not in this bundle (made with --no-mamba); SegResMamba runs on its PyTorch scan")
        return False
    if not rebuild and mamba_build.kernels_import() is None:
        print("mamba-ssm: its CUDA kernels already import here; not rebuilt (--rebuild-mamba to rebuild)")
        return True
    sdist = bundle / manifest.mamba_ssm_sdist
    problems = mamba_build.build_problems(need_gpu=not architectures)
    if problems:
        print("mamba-ssm: its CUDA kernels cannot be built here:\n" + "\n".join(f"  - {p}" for p in problems)
              + "\nSegResMamba runs on its PyTorch scan instead (same results, slower on a GPU). Once that is fixed:\n"
              f"  nnunetv2-segresmamba-install build-mamba --sdist {sdist}", flush=True)
        return False
    architectures = architectures or mamba_build.local_architectures()
    print(f"mamba-ssm: building for sm_{', sm_'.join(architectures)} only (several minutes; "
          f"log: {bundle / 'mamba_build.log'})", flush=True)
    built = mamba_build.build_wheel(sdist, architectures, bundle / "mamba_ssm_wheels", jobs, bundle / "mamba_build.log")
    mamba_build.install_wheel(built.path)
    print(f"mamba-ssm: built in {built.seconds:.0f} s ({built.path.name}, kept for other nodes with this GPU "
          "architecture and torch)", flush=True)
    return True


def install_bundle(bundle: Path, architectures: list[str] | None = None, jobs: int | None = None,
                   with_mamba: bool = True, rebuild_mamba: bool = False) -> int:
    """Steps 1-4 of the module's docstring; the exit code: 0 when the installation verifies."""
    bundle = Path(bundle).resolve()
    manifest = read_manifest(bundle)
    for problem in (python_problem(manifest), torch_problem(manifest)):
        if problem:
            raise BundleError(problem)
    install_wheels(bundle, manifest)
    built = with_mamba and build_mamba(bundle, manifest, architectures, jobs, rebuild_mamba)
    command = [sys.executable, "-m", "nnunetv2_segresmamba.install", "verify"]
    if built:
        command.append("--require-cuda-scan")
    print("Verifying in a fresh interpreter:", flush=True)
    return subprocess.run(command).returncode
