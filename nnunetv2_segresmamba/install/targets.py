"""The machine a bundle is for: its Python version and the wheel platform tags its pip accepts."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass, field

# manylinux_2_28 covers RHEL/Rocky 8, Ubuntu 20.04 and newer; torch's Linux wheels need it. A node with an
# older glibc (ldd --version) needs --glibc to say so, and gets older wheels where they exist.
DEFAULT_GLIBC = "2.28"
OLDEST_PEP600_GLIBC_MINOR = 17  # manylinux_2_17 == manylinux2014, the oldest tag current wheels use
LEGACY_ALIASES = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
LEGACY_ARCHES = {"manylinux2014": ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l"),
                 "manylinux2010": ("x86_64", "i686"), "manylinux1": ("x86_64", "i686")}


def python_version_tag(version: str) -> str:
    """``3.12`` (or ``312``, ``cp312``) -> ``3.12``; anything else is an error that says what is expected."""
    match = re.fullmatch(r"(?:cp)?(3)\.?(\d{1,2})", version.strip())
    if not match:
        raise ValueError(f"--python-version {version!r}: expected the target's major.minor, e.g. 3.12")
    return f"{match.group(1)}.{match.group(2)}"


def manylinux_platforms(glibc: str, arch: str) -> list[str]:
    """Every manylinux tag a pip on a machine with this glibc and CPU architecture installs, newest first.
    pip's --platform takes each tag literally (it does not add the older ones), so all are listed."""
    match = re.fullmatch(r"2\.(\d+)", glibc.strip())
    if not match:
        raise ValueError(f"--glibc {glibc!r}: expected the node's glibc version as 2.N (see `ldd --version`)")
    newest = int(match.group(1))
    if newest < OLDEST_PEP600_GLIBC_MINOR:
        raise ValueError(f"glibc {glibc} is older than 2.17, which current wheels (and torch) do not support")
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, OLDEST_PEP600_GLIBC_MINOR - 1, -1)]
    for minor, alias in LEGACY_ALIASES.items():
        if minor <= newest and arch in LEGACY_ARCHES[alias]:
            tags.append(f"{alias}_{arch}")
    return tags


@dataclass(frozen=True)
class Target:
    python_version: str  # "3.12"
    platforms: tuple[str, ...] = field(default_factory=tuple)

    def pip_arguments(self) -> list[str]:
        """pip download/install options that select wheels for this target instead of this machine."""
        arguments = ["--python-version", self.python_version, "--implementation", "cp", "--only-binary=:all:"]
        for tag in self.platforms:
            arguments += ["--platform", tag]
        return arguments

    def describe(self) -> str:
        return f"CPython {self.python_version} on {self.platforms[0] if self.platforms else 'any platform'}"


def make_target(python_version: str | None = None, glibc: str | None = None, arch: str | None = None,
                platforms: list[str] | None = None) -> Target:
    """A Target from the command line; unset parts default to this interpreter, glibc 2.28 and this CPU."""
    version = python_version_tag(python_version or f"{sys.version_info.major}.{sys.version_info.minor}")
    if platforms:
        return Target(version, tuple(platforms))
    return Target(version, tuple(manylinux_platforms(glibc or DEFAULT_GLIBC, arch or platform.machine())))
