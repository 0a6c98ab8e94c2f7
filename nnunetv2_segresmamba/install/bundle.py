"""An offline bundle: every wheel the package needs on a target Python and platform, plus mamba-ssm's source.

Made on a machine with the package index, copied to a GPU node without one, installed there by
``install.sh`` (``node.py``). How the wheel list is found:

1. the package's own wheel is built from its source tree (or taken as given);
2. some dependencies (acvl-utils, batchgenerators and others of nnunetv2's) publish only a source
   distribution. A resolution for this machine, which may use sources, finds them; each is built into a
   wheel here, which must be pure Python (``py3-none-any``) to run on the target;
3. with ``existing_torch``, the resolution sees a stand-in wheel of torch at the node's version, which has
   no dependencies: torchvision and the rest are matched to the node's torch, and neither torch nor its
   CUDA libraries are resolved or bundled;
4. pip resolves the whole tree for the target (``install --dry-run --report`` with ``--python-version``
   and ``--platform``, wheels only, those built in step 2 included; metadata only, nothing large is
   downloaded yet) and then downloads exactly the resolved versions for the target.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .mamba_build import MAMBA_SSM_VERSION, RUNTIME_DEPENDENCIES, fetch_sdist
from .pip import check, normalized_name, run_pip
from .targets import Target

PLUGIN = "nnunetv2-segresmamba"
MANIFEST = "bundle.json"
INSTALLER = "install.sh"
SDIST_FOLDER = "sdist"  # not scanned by pip's --find-links, so no install ever picks the sdist up by itself
ALWAYS = ["nvidia-ml-py"]  # the trainers' GPU energy logging (the package's "energy" extra)
# mamba-ssm's import needs RUNTIME_DEPENDENCIES; building it without build isolation needs these.
MAMBA_BUILD = ["setuptools", "wheel", "packaging", "ninja"]


class BundleError(RuntimeError):
    """The bundle cannot be made as asked; the message says why and what to do."""


@dataclass
class Manifest:
    """What ``bundle.json`` records, for the installer on the node and for people."""
    made_by: str
    python_version: str
    platforms: list[str]
    install: list[str]  # requirements the node installs from the bundle, by name
    existing_torch: str | None  # the node's torch version the bundle was resolved against, or None: bundled
    mamba_ssm_sdist: str | None  # relative path, or None: left out
    left_out: list[str] = field(default_factory=list)
    wheels: list[str] = field(default_factory=list)


def read_manifest(bundle: Path) -> Manifest:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} does not exist: {bundle} is not a bundle made by `nnunetv2-segresmamba-install "
                          "bundle`")
    return Manifest(**json.loads(path.read_text()))


def source_tree() -> Path | None:
    """The source checkout this package runs from, if it runs from one (not from site-packages)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'name = "{PLUGIN}"' in pyproject.read_text():
        return root
    return None


def plugin_wheel(source: str | Path | None, out: Path, log: Path) -> Path:
    """The package's wheel in ``out``: built from a source tree, or copied when ``source`` is a wheel."""
    source = Path(source) if source else source_tree()
    if source is None:
        raise BundleError(f"{PLUGIN} is not on the package index: pass --plugin with its source folder (a clone) "
                          "or a wheel built from it")
    if source.suffix == ".whl":
        return Path(shutil.copy2(source, out))
    check(run_pip("wheel", "--no-deps", "-w", out, source, log=log), f"building {PLUGIN}'s wheel from {source}")
    return max(out.glob("nnunetv2_segresmamba-*.whl"), key=lambda path: path.stat().st_mtime)  # the one just built


def build_pure_wheel(requirement: str, out: Path, log: Path) -> Path:
    """A wheel of ``requirement`` built here from its source distribution; only a pure-Python one will do."""
    with tempfile.TemporaryDirectory() as work:
        check(run_pip("wheel", "--no-deps", "-w", work, requirement, log=log),
              f"building {requirement} from its source distribution")
        wheels = sorted(Path(work).glob("*.whl"))
        if len(wheels) != 1:
            raise BundleError(f"building {requirement} gave {len(wheels)} wheels, expected one")
        if not wheels[0].name.endswith("-none-any.whl"):
            raise BundleError(
                f"{requirement} has no wheel for the target and its source builds a platform-specific wheel "
                f"({wheels[0].name}). Build its wheel on a machine like the target and put it into the bundle "
                "folder, or choose a target Python version that it publishes wheels for.")
        return Path(shutil.move(str(wheels[0]), out / wheels[0].name))


def _dry_run(requirements: list[str], options: list[str], find_links: list[Path], what: str,
             log: Path) -> list[dict[str, Any]]:
    """pip's installation report (one item per distribution) for ``requirements``, resolved with ``options``."""
    links = [argument for folder in find_links for argument in ("--find-links", folder)]
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        # Not --quiet: pip explains a conflict only in its full output, of which check() shows the end.
        check(run_pip("install", "--dry-run", "--ignore-installed", "--target", Path(work) / "target", "--report",
                      report, *options, *links, *requirements, quiet=False, log=log), what,
              "A dependency that publishes neither a wheel for the target nor a pure-Python source cannot be "
              "bundled; a target Python version it publishes wheels for can.")
        return json.loads(report.read_text())["install"]


def source_distributions(items: list[dict[str, Any]]) -> list[str]:
    """``name==version`` of the items of a pip report that pip would install from a source distribution."""
    return [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in items
            if not item["download_info"]["url"].endswith(".whl")]


def build_source_only(requirements: list[str], find_links: list[Path], out: Path, log: Path) -> list[str]:
    """Builds a wheel of every dependency that a resolution for this machine takes from a source distribution."""
    items = _dry_run(requirements, [], find_links, "resolving the dependencies on this machine", log)
    sources = source_distributions(items)
    for requirement in sources:
        print(f"  {requirement}: published as source only, building its wheel", flush=True)
        build_pure_wheel(requirement, out, log)
    return sources


def resolve(requirements: list[str], target: Target, find_links: list[Path], log: Path) -> list[dict[str, Any]]:
    """pip's installation report for ``requirements`` on ``target``, wheels only."""
    return _dry_run(requirements, target.pip_arguments(), find_links,
                    f"resolving the dependencies for {target.describe()}", log)


def stand_in_wheel(name: str, version: str, directory: Path) -> Path:
    """A wheel of metadata only, with no dependencies: to pip's resolver, ``name`` at ``version`` is there.
    ``version`` carries a local label (``2.11.0+existing``) so that only an exact pin selects it, while
    other packages' ``torch==2.11.0`` still match it (PEP 440 ignores local labels there)."""
    dist = f"{name}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: nnunetv2-segresmamba\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def write_installer(out: Path) -> Path:
    """``install.sh``: installs the package from the bundle with pip, then hands over to ``node.py``."""
    script = out / INSTALLER
    script.write_text(f"""#!/bin/sh
# Installs this bundle into the Python environment of $PYTHON (default: python3), without a package index:
#   sh {INSTALLER} [--arch 9.0] [--jobs 8] [--no-mamba]
# (the options: python3 -m nnunetv2_segresmamba.install install -h)
set -e
here=$(cd "$(dirname "$0")" && pwd)
python=${{PYTHON:-python3}}
"$python" -m pip install --no-index --find-links "$here" {PLUGIN}
exec "$python" -m nnunetv2_segresmamba.install install "$here" "$@"
""")
    script.chmod(0o755)
    return script


def make_bundle(out: Path, target: Target, plugin: str | Path | None = None, existing_torch: str | None = None,
                with_mamba: bool = True, mamba_version: str = MAMBA_SSM_VERSION,
                also: list[str] | None = None) -> Manifest:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()) and not (out / MANIFEST).exists():
        raise BundleError(f"{out} is neither empty nor a bundle: choose a new folder")
    log = out / "bundle.log"
    print(f"Bundle for {target.describe()} in {out} (pip's output: {log})", flush=True)

    wheel = plugin_wheel(plugin, out, log)
    print(f"  {wheel.name}", flush=True)
    wanted = [*ALWAYS, *(also or []), *(RUNTIME_DEPENDENCIES + MAMBA_BUILD if with_mamba else [])]
    with tempfile.TemporaryDirectory() as stand_ins:
        pin = []
        if existing_torch:
            version = f"{existing_torch.split('+')[0]}+existing"  # the node's torch, whatever its CUDA label
            stand_in_wheel("torch", version, Path(stand_ins))
            pin = [f"torch=={version}"]
        requirements, links = [str(wheel), *wanted, *pin], [out, Path(stand_ins)]
        build_source_only(requirements, links, out, log)
        items = resolve(requirements, target, links, log)
    kept = [item for item in items if not (existing_torch and normalized_name(item["metadata"]["name"]) == "torch")]
    left_out = ["torch"] if existing_torch else []
    print(f"  {len(kept)} distributions" + (" (torch: the node's own)" if existing_torch else ""), flush=True)

    pinned = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in kept]
    check(run_pip("download", "--no-deps", *target.pip_arguments(), "--find-links", out, "-d", out, *pinned, log=log),
          f"downloading the wheels for {target.describe()}")

    sdist = None
    if with_mamba:
        sdist = fetch_sdist(out / SDIST_FOLDER, mamba_version).relative_to(out).as_posix()
        print(f"  {sdist}", flush=True)
    write_installer(out)
    wheels = sorted(path.name for path in out.glob("*.whl"))
    manifest = Manifest(made_by=f"{PLUGIN} {__version__}", python_version=target.python_version,
                        platforms=list(target.platforms), install=[PLUGIN, *wanted],
                        existing_torch=existing_torch, mamba_ssm_sdist=sdist, left_out=left_out, wheels=wheels)
    (out / MANIFEST).write_text(json.dumps(asdict(manifest), indent=1) + "\n")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"Done: {len(wheels)} wheels, {size / 2**20:.0f} MiB. On the node: sh {out.name}/{INSTALLER}", flush=True)
    return manifest
