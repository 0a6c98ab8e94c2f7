"""The install tools: wheel targets, the mamba-ssm architecture patch, bundle resolution pieces, the node's
checks and the verification command. No network: pip runs only against local folders."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from nnunetv2_segresmamba.install import bundle, mamba_build, node
from nnunetv2_segresmamba.install.bundle import BundleError, Manifest
from nnunetv2_segresmamba.install.mamba_build import MambaBuildError
from nnunetv2_segresmamba.install.targets import Target, make_target, manylinux_platforms, python_version_tag
from nnunetv2_segresmamba.install.verify import SCAN_TOLERANCE, Verification

SETUP_FIXTURE = (Path(__file__).parent / "data" / "mamba_setup_fixture.txt").read_text()


def run_flag_code(text: str, cuda: str, hip: bool = False) -> list[str]:
    """The nvcc flags the (fixture's) setup.py code computes for a CUDA version."""
    namespace = {"HIP_BUILD": hip, "bare_metal_version": Version(cuda), "Version": Version}
    exec(compile(text, "setup.py", "exec"), namespace)
    return namespace["nvcc_flags"]


# --- targets -------------------------------------------------------------------------------------------

def test_manylinux_platforms_list_every_tag_the_nodes_pip_accepts():
    tags = manylinux_platforms("2.28", "x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and tags[11] == "manylinux_2_17_x86_64"
    assert tags[12:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert len(tags) == len(set(tags)) == 15
    # aarch64 had no manylinux2010/manylinux1; an old glibc gets only the tags it can load
    assert manylinux_platforms("2.17", "aarch64") == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]


@pytest.mark.parametrize("glibc", ["2.12", "2", "3.1", "latest"])
def test_unusable_glibc_is_an_error_that_says_what_to_give(glibc):
    with pytest.raises(ValueError, match="glibc"):
        manylinux_platforms(glibc, "x86_64")


@pytest.mark.parametrize("given, expected", [("3.12", "3.12"), ("312", "3.12"), ("cp313", "3.13"), ("3.9", "3.9")])
def test_python_version_forms(given, expected):
    assert python_version_tag(given) == expected


def test_python_version_rejects_what_pip_would_misread():
    with pytest.raises(ValueError, match="major.minor"):
        python_version_tag("3.12.1")


def test_target_pip_arguments_select_wheels_for_the_target_only():
    target = make_target("3.12", "2.28", "x86_64")
    arguments = target.pip_arguments()
    assert arguments[:4] == ["--python-version", "3.12", "--implementation", "cp"]
    assert "--only-binary=:all:" in arguments  # pip refuses --platform otherwise
    assert [arguments[i + 1] for i, a in enumerate(arguments) if a == "--platform"] == list(target.platforms)
    assert make_target("3.11", platforms=["manylinux_2_31_aarch64"]) == Target("3.11", ("manylinux_2_31_aarch64",))


# --- mamba-ssm's architecture list -----------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [("9.0", "90"), ("90", "90"), ("sm_90", "90"), ("8.6", "86"),
                                             ("12.0", "120"), ("120", "120"), ("10.0", "100"), ("9.0a", "90a")])
def test_parse_architecture(given, expected):
    assert mamba_build.parse_architecture(given) == expected


@pytest.mark.parametrize("given", ["", "9", "hopper", "9.0.1", "sm90x"])
def test_parse_architecture_rejects_non_capabilities(given):
    with pytest.raises(ValueError, match="compute capability"):
        mamba_build.parse_architecture(given)


def test_fixture_compiles_for_every_listed_architecture_unpatched():
    assert mamba_build.listed_architectures(SETUP_FIXTURE) == ["75", "80", "90", "100", "120"]
    flags = run_flag_code(SETUP_FIXTURE, "12.8")
    assert [f for f in flags if f.startswith("arch=")] == [f"arch=compute_{a},code=sm_{a}"
                                                            for a in ("75", "80", "90", "100", "120")]


@pytest.mark.parametrize("cuda", ["11.7", "12.4", "13.0"])
def test_restricted_setup_compiles_for_the_asked_architecture_only(cuda):
    patched = mamba_build.restrict_architectures(SETUP_FIXTURE, ["90"])
    flags = run_flag_code(patched, cuda)
    # whatever the CUDA version, nvcc gets exactly one -gencode pair: sm_90
    assert [f for f in flags if "arch=" in f or f == "-gencode"] == ["-gencode", "arch=compute_90,code=sm_90"]
    assert flags[:2] == ["-O3", "--use_fast_math"] and flags[-2:] == ["--threads", "4"]  # the rest untouched
    assert run_flag_code(patched, cuda, hip=True) == ["-O3", "--use_fast_math", "-DBUILD_PYTHON_PACKAGE",
                                                      "--threads", "4"]


def test_restricted_setup_takes_several_architectures_and_one_outside_mambas_list():
    patched = mamba_build.restrict_architectures(SETUP_FIXTURE, ["80", "86", "80"])
    flags = run_flag_code(patched, "12.8")
    assert [f for f in flags if f.startswith("arch=")] == ["arch=compute_80,code=sm_80", "arch=compute_86,code=sm_86"]
    assert mamba_build.listed_architectures(patched) == []  # nothing of the original list is left


def test_setup_without_the_expected_lines_is_refused_not_built_for_everything():
    changed = SETUP_FIXTURE.replace('cc_flag.append("-gencode")', 'cc_flag.extend(["-gencode"])')
    with pytest.raises(MambaBuildError, match="expected form"):
        mamba_build.restrict_architectures(changed, ["90"])
    with pytest.raises(ValueError, match="no GPU architecture"):
        mamba_build.restrict_architectures(SETUP_FIXTURE, [])


def test_build_problems_say_what_is_missing(monkeypatch):
    import torch
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problems = "\n".join(mamba_build.build_problems(need_gpu=True))
    assert "not a CUDA build" in problems and "nvcc" in problems and "--arch" in problems
    assert "--arch" not in "\n".join(mamba_build.build_problems(need_gpu=False))


def test_build_problems_catch_a_toolkit_folder_without_headers(monkeypatch, tmp_path):
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))  # e.g. /usr/local when only a wrapper nvcc is found
    assert any("cuda_runtime.h" in p for p in mamba_build.build_problems(need_gpu=False))


# --- bundle --------------------------------------------------------------------------------------------

def fake_wheel(folder: Path, name: str, version: str, requires: list[str] = ()) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata + "".join(f"Requires-Dist: {r}\n"
                                                                                  for r in requires))
        archive.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n")
        archive.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return path


def test_stand_in_torch_satisfies_exact_pins_and_brings_no_dependencies(tmp_path):
    """What --existing-torch relies on: pip resolves against the stand-in, and a package pinned to the public
    version (as torchvision pins torch) accepts it."""
    links = tmp_path / "links"
    links.mkdir()
    bundle.stand_in_wheel("torch", "2.11.0+existing", links)
    fake_wheel(links, "fakevision", "0.26.0", ["torch==2.11.0"])
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--ignore-installed",
                             "--target", str(tmp_path / "t"), "--report", str(report), "--find-links", str(links),
                             "torch==2.11.0+existing", "fakevision"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resolved = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert resolved == {"torch": "2.11.0+existing", "fakevision": "0.26.0"}


def test_source_distributions_are_the_items_pip_would_build():
    def item(name, url):
        return {"metadata": {"name": name, "version": "1.0"}, "download_info": {"url": url}}

    items = [item("acvl-utils", "https://files.example/acvl_utils-1.0.tar.gz"),
             item("numpy", "https://files.example/numpy-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
             item("nnunetv2-segresmamba", "file:///tmp/b/nnunetv2_segresmamba-1.0-py3-none-any.whl"),
             item("legacy", "https://files.example/legacy-1.0.zip")]
    assert bundle.source_distributions(items) == ["acvl-utils==1.0", "legacy==1.0"]


def test_installer_script_installs_from_the_bundle_only(tmp_path):
    script = bundle.write_installer(tmp_path)
    text = script.read_text()
    assert "pip install --no-index --find-links" in text and "-m nnunetv2_segresmamba.install install" in text
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0  # valid shell


def test_a_folder_that_is_not_a_bundle_says_so(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        bundle.read_manifest(tmp_path)


# --- the node's checks ---------------------------------------------------------------------------------

def manifest(**changes) -> Manifest:
    values = dict(made_by="test", python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
                  platforms=["manylinux_2_28_x86_64"], install=["nnunetv2-segresmamba"], existing_torch=None,
                  mamba_ssm_sdist=None)
    return Manifest(**{**values, **changes})


def test_manifest_round_trip(tmp_path):
    (tmp_path / bundle.MANIFEST).write_text(json.dumps(manifest(existing_torch="2.11.0").__dict__))
    assert bundle.read_manifest(tmp_path) == manifest(existing_torch="2.11.0")


def test_bundle_for_another_python_is_refused_with_the_fix():
    assert node.python_problem(manifest()) is None
    problem = node.python_problem(manifest(python_version="3.99"))
    assert "--python-version" in problem and "3.99" in problem


def test_existing_torch_must_match_the_nodes(monkeypatch):
    versions = {"torch": "2.11.0+cu130"}

    def version(name):
        if name not in versions:
            raise node.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(node.metadata, "version", version)
    assert node.torch_problem(manifest()) is None  # torch bundled: nothing to match
    assert node.torch_problem(manifest(existing_torch="2.11.0")) is None  # local labels do not matter
    assert "--existing-torch 2.11.0" in node.torch_problem(manifest(existing_torch="2.10.0"))
    versions.clear()
    assert "no torch" in node.torch_problem(manifest(existing_torch="2.11.0"))


# --- verification --------------------------------------------------------------------------------------

def test_verification_failures():
    ok = Verification(trainers_found=["nnUNetTrainerSegResMamba"], scan_errors={"torch": 1e-7})
    assert ok.failures() == []
    assert "CUDA scan" in ok.failures(require_cuda_scan=True)[0]
    wrong = Verification(trainers_found=["a"], scan_errors={"torch": 1e-7, "cuda": SCAN_TOLERANCE * 10})
    assert len(wrong.failures()) == 1 and "cuda" in wrong.failures()[0]
    assert Verification(scan_errors={"torch": float("nan")}).failures()[-1].startswith("the torch scan")
    assert "finds none" in Verification().failures()[0]


def test_verify_command_in_a_fresh_interpreter():
    """The installed package: nnU-Net finds the trainers through the .pth hook, the PyTorch scan matches the
    float64 reference; without a GPU it says that mamba-ssm's scan was not checked."""
    result = subprocess.run([sys.executable, "-m", "nnunetv2_segresmamba.install", "verify"], cwd="/",
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nnUNetTrainerSegResMamba," in result.stdout and "NOT FOUND" not in result.stdout
    assert "the PyTorch scan against the float64 reference" in result.stdout
    if "Device: cpu" in result.stdout:
        assert "mamba-ssm's CUDA scan was not checked" in result.stdout
    assert result.stdout.strip().endswith("Installation verified.")
