"""``nnunetv2-segresmamba-install``: bundle | install | build-mamba | verify (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .bundle import BundleError
from .mamba_build import MAMBA_SSM_VERSION, MambaBuildError
from .pip import PipError

ARCH_HELP = ("GPU architecture(s) to build mamba-ssm for, as compute capability (8.0 A100, 8.6 A40/RTX 3090, "
             "8.9 L40S/RTX 4090, 9.0 H100/H200, 10.0 B200); default: those of the visible GPUs")


def bundle_command(args: argparse.Namespace) -> int:
    from .bundle import make_bundle
    from .targets import make_target

    target = make_target(args.python_version, args.glibc, args.arch, args.platform)
    make_bundle(args.out, target, args.plugin, args.existing_torch, not args.no_mamba, args.mamba_version, args.also)
    return 0


def install_command(args: argparse.Namespace) -> int:
    from .mamba_build import parse_architecture
    from .node import install_bundle

    architectures = [parse_architecture(a) for a in args.arch] if args.arch else None
    return install_bundle(args.bundle, architectures, args.jobs, not args.no_mamba, args.rebuild_mamba)


def build_mamba_command(args: argparse.Namespace) -> int:
    import tempfile

    from . import mamba_build

    problems = mamba_build.build_problems(need_gpu=not args.arch)
    if problems:
        raise MambaBuildError("mamba-ssm cannot be built here:\n" + "\n".join(f"  - {p}" for p in problems))
    architectures = ([mamba_build.parse_architecture(a) for a in args.arch] if args.arch
                     else mamba_build.local_architectures())
    with tempfile.TemporaryDirectory(prefix="mamba_ssm_") as work:
        sdist = args.sdist or mamba_build.fetch_sdist(Path(work), args.mamba_version)
        wheel_dir = args.keep or Path(work) / "wheels"
        print(f"Building mamba-ssm ({Path(sdist).name}) for sm_{', sm_'.join(architectures)} only", flush=True)
        built = mamba_build.build_wheel(Path(sdist), architectures, wheel_dir, args.jobs, args.log)
        print(f"Built {built.path.name} in {built.seconds:.0f} s (mamba-ssm's setup.py lists "
              f"sm_{', sm_'.join(built.listed)}; the ones its CUDA version allows are compiled without this)")
        if not args.no_install:
            mamba_build.install_wheel(built.path)
            mamba_build.install_runtime_dependencies()
            problem = mamba_build.scan_import()
            if problem:
                raise MambaBuildError(f"the built mamba-ssm does not import: {problem}")
            print("Installed; its selective scan imports. Check it: nnunetv2-segresmamba-install verify")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from .verify import report, verify

    result = verify()
    print(report(result))
    failures = result.failures(args.require_cuda_scan)
    for failure in failures:
        print(f"FAILED: {failure}")
    if not failures:
        print("Installation verified.")
    return 1 if failures else 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="nnunetv2-segresmamba-install", description="Offline bundles for GPU nodes, "
                                   "a mamba-ssm build for the local GPU only, and a check of the installation.")
    commands = main.add_subparsers(dest="command", required=True)

    bundle = commands.add_parser("bundle", help="on a machine with the package index: collect everything an "
                                 "offline node needs into a folder")
    bundle.add_argument("out", type=Path, help="the bundle folder (new, or an earlier bundle to refresh)")
    bundle.add_argument("--python-version", help="the node's Python, e.g. 3.12 (default: this one)")
    bundle.add_argument("--glibc", help="the node's glibc version from `ldd --version` (default: 2.28)")
    bundle.add_argument("--arch", help="the node's CPU architecture: x86_64 or aarch64 (default: this machine's)")
    bundle.add_argument("--platform", action="append", help="explicit pip platform tags instead of --glibc/--arch "
                        "(repeatable)")
    bundle.add_argument("--existing-torch", metavar="VERSION", help="the node already has this torch (its "
                        "`python -c 'import torch; print(torch.__version__)'`): leave torch and its CUDA libraries "
                        "out and match everything else to it")
    bundle.add_argument("--no-mamba", action="store_true", help="leave mamba-ssm out (PyTorch scan only)")
    bundle.add_argument("--mamba-version", default=MAMBA_SSM_VERSION, help="mamba-ssm release (default: %(default)s)")
    bundle.add_argument("--plugin", help="this package's source folder or wheel (default: the checkout this runs from)")
    bundle.add_argument("--also", nargs="+", default=[], metavar="REQUIREMENT",
                        help="more packages for the node, e.g. matplotlib (for scripts/compare.py's figure)")
    bundle.set_defaults(run=bundle_command)

    install = commands.add_parser("install", help="on the node: install a bundle, build mamba-ssm for this GPU, "
                                  "verify (what the bundle's install.sh runs)")
    install.add_argument("bundle", type=Path)
    install.add_argument("--arch", nargs="+", help=ARCH_HELP)
    install.add_argument("--jobs", type=int, help="parallel compile jobs (MAX_JOBS; each nvcc may use several GB)")
    install.add_argument("--no-mamba", action="store_true", help="do not build mamba-ssm (PyTorch scan only)")
    install.add_argument("--rebuild-mamba", action="store_true", help="build mamba-ssm even if its kernels import")
    install.set_defaults(run=install_command)

    build = commands.add_parser("build-mamba", help="build and install mamba-ssm for this machine's GPU "
                                "architecture only (online: downloads its source; offline: --sdist)")
    build.add_argument("--sdist", type=Path, help="mamba-ssm's source archive (default: download it)")
    build.add_argument("--mamba-version", default=MAMBA_SSM_VERSION, help="with download (default: %(default)s)")
    build.add_argument("--arch", nargs="+", help=ARCH_HELP)
    build.add_argument("--jobs", type=int, help="parallel compile jobs (MAX_JOBS)")
    build.add_argument("--keep", type=Path, metavar="DIR", help="keep the built wheel in DIR, for other machines "
                       "with the same GPU architecture, torch and Python")
    build.add_argument("--log", type=Path, help="write the compiler's output here")
    build.add_argument("--no-install", action="store_true", help="only build the wheel (with --keep)")
    build.set_defaults(run=build_mamba_command)

    check = commands.add_parser("verify", help="which trainers nnU-Net finds; the scan backends against the "
                                "float64 reference")
    check.add_argument("--require-cuda-scan", action="store_true", help="fail when mamba-ssm's scan does not run")
    check.set_defaults(run=verify_command)
    return main


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = args.run(args)
    except (BundleError, MambaBuildError, PipError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)
