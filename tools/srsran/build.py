"""The patched srsRAN_4G, built from upstream's source and installed into a prefix.

`build` runs the steps below in order; each fails with a `BuildError` that says what to do.

1. **Source**: a local srsRAN_4G git repository (a work tree or a bare one, a partial clone
   too), or a shallow clone of the upstream tag into the work folder.
2. **Tree**: the pinned upstream commit's tree, exported with `git archive` (the user's work
   tree is never read or changed; blobs a partial clone lacks are left out and named, and
   the series touches none of them), then the series applied with `git apply`, which needs
   no repository (`git am` cannot write a tree without every blob).
3. **Dependencies**: the Debian build packages checked, the missing ones installed with
   apt-get (as root, or through sudo).
4. **Configure**: CMake, Release, with ``$ORIGIN/../lib`` as the run path, so the installed
   programs find their libraries and RF plugins in the prefix wherever it is moved to and
   nobody sets LD_LIBRARY_PATH. Both rtctl servers must be enabled: without ZeroMQ or
   nlohmann-json the series builds a stub, which is refused here.
5. **Build**: only srsepc, srsenb, srsue and the RF plugins asked for.
6. **Install**: programs into ``PREFIX/bin``, the RF libraries into ``PREFIX/lib``, each
   program's libraries checked with ldd, and the stamp (`drivers.srsran.series`) written
   last, so an interrupted install is never taken for a good one.

The work folder keeps the exported source and the CMake tree between builds. A new tree is
synced into the kept one by content: a changed file gets a new mtime (so make rebuilds it,
even when it changed back to an older version) and an unchanged one keeps its own, so a
rebuild after a patch change compiles only what the change touches.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drivers.srsran.series import (
    PATCH_DIR,
    PATCHED,
    PROGRAMS,
    STAMP_FILE,
    UPSTREAM_COMMIT,
    UPSTREAM_TAG,
    UPSTREAM_URL,
    Stamp,
    patch_files,
    series_sha256,
)
from hil.base.errors import HilError

DEFAULT_WORK = Path("~/.cache/vbs-hil/srsran-build")

DEB_PACKAGES = ("git", "cmake", "build-essential", "pkg-config", "libfftw3-dev",
                "libmbedtls-dev", "libboost-program-options-dev", "libconfig++-dev",
                "libsctp-dev", "libzmq3-dev", "nlohmann-json3-dev")
"""Enough for the ZMQ radio on Debian 12 / Ubuntu 22.04+ (libzmq3-dev also serves rtctl,
nlohmann-json3-dev >= 3.9 rtctl's JSON)."""
DEB_UHD_PACKAGES = ("libuhd-dev", "uhd-host")
"""For USRP B210s (`--uhd`)."""

TARGETS = {"zmq": "srsran_rf_zmq", "uhd": "srsran_rf_uhd"}
"""The RF plugin target of each radio."""
PROGRAM_PATHS = {"srsepc": "srsepc/src/srsepc", "srsenb": "srsenb/src/srsenb",
                 "srsue": "srsue/src/srsue"}
"""Where each program lands in the CMake tree."""
RF_LIB_DIR = "lib/src/phy/rf"
RTCTL_ENABLED = ("rtctl: control server enabled", "rtctl: srsue control server enabled")
"""What CMake prints when each rtctl server is built for real (patches 0001 and 0007)."""

Log = Callable[[str], None]


class BuildError(HilError):
    """A step of the build failed; the message names the step and what to do."""


@dataclass(frozen=True)
class BuildPlan:
    """What to build and where; paths are on this machine."""

    prefix: Path
    work: Path
    source: Path | None = None
    """A local srsRAN_4G repository; None: clone `clone_url` at `tag`."""
    clone_url: str = UPSTREAM_URL
    tag: str = UPSTREAM_TAG
    commit: str = UPSTREAM_COMMIT
    patch_dir: Path = PATCH_DIR
    radios: tuple[str, ...] = ("zmq",)
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    install_deps: bool = True
    packages: tuple[str, ...] | None = None
    """The Debian build packages; None: those srsRAN needs for `radios`."""

    @property
    def deb_packages(self) -> tuple[str, ...]:
        if self.packages is not None:
            return self.packages
        return DEB_PACKAGES + (DEB_UHD_PACKAGES if "uhd" in self.radios else ())

    @property
    def src(self) -> Path:
        return self.work / "src"

    @property
    def cmake_dir(self) -> Path:
        return self.work / "build"

    @property
    def log_path(self) -> Path:
        return self.work / "build.log"


def run(command: list[str], what: str, cwd: Path | None = None, log: Log | None = None,
        env: dict[str, str] | None = None, input_bytes: bytes | None = None) -> str:
    """Run a command to the end; BuildError with its last lines if it fails."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, input=input_bytes,
                                env=None if env is None else {**os.environ, **env})
    except FileNotFoundError:
        raise BuildError(f"{what}: {command[0]} is not installed") from None
    out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    if log:
        log(out)
    if result.returncode != 0:
        tail = " | ".join(line for line in out.strip().splitlines()[-6:])
        raise BuildError(f"{what} failed (`{' '.join(command)}`, exit {result.returncode}): "
                         f"{tail or 'no output'}")
    return result.stdout.decode(errors="replace")


# 1. source ------------------------------------------------------------------------------

def repository(plan: BuildPlan, say: Log) -> Path:
    """The git repository holding the pinned commit: the given one, or a fresh clone."""
    if plan.source is not None:
        source = plan.source.expanduser().resolve()
        if not source.exists():
            raise BuildError(f"--source {source}: no such folder; give the folder of a "
                             f"srsRAN_4G checkout (git clone {plan.clone_url})")
        probe = subprocess.run(["git", "-C", str(source), "rev-parse", "--git-dir"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            raise BuildError(f"--source {source}: not a git repository; the build exports "
                             f"commit {plan.commit[:10]} ({plan.tag}) from its history, "
                             f"so give a git clone of {plan.clone_url}")
        if not _has_commit(source, plan.commit):
            raise BuildError(f"--source {source}: has no commit {plan.commit[:10]} "
                             f"({plan.tag}), which the patches apply to; fetch it: "
                             f"git -C {source} fetch {plan.clone_url} tag {plan.tag}")
        return source
    clone = plan.work / "upstream"
    if not _has_commit(clone, plan.commit):
        say(f"cloning {plan.clone_url} at {plan.tag}")
        shutil.rmtree(clone, ignore_errors=True)
        run(["git", "clone", "--quiet", "--depth", "1", "--branch", plan.tag, "--no-checkout",
             plan.clone_url, str(clone)], f"cloning {plan.clone_url} (needs the internet; or "
            "give --source with a local checkout)")
        if not _has_commit(clone, plan.commit):
            raise BuildError(f"{plan.clone_url} tag {plan.tag} is not commit "
                             f"{plan.commit[:10]}, which the patches apply to")
    return clone


def _has_commit(repo: Path, commit: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


# 2. tree --------------------------------------------------------------------------------

def missing_blobs(repo: Path, commit: str) -> list[str]:
    """Paths of `commit`'s tree whose blobs this repository lacks (a partial clone)."""
    listing = run(["git", "-C", str(repo), "ls-tree", "-r", "-z", commit],
                  "listing the upstream tree")
    entries = [item.split("\t", 1) for item in listing.split("\0") if item]
    blobs = [(meta.split()[2], path) for meta, path in entries if meta.split()[1] == "blob"]
    checked = run(["git", "-C", str(repo), "cat-file", "--batch-check"], "checking the blobs",
                  input_bytes="".join(f"{sha}\n" for sha, _ in blobs).encode())
    missing = {line.split()[0] for line in checked.splitlines() if line.endswith(" missing")}
    return [path for sha, path in blobs if sha in missing]


def export_tree(repo: Path, commit: str, into: Path, say: Log) -> None:
    """`commit`'s files into `into` (made empty first); missing blobs left out."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    missing = missing_blobs(repo, commit)
    if missing:
        say(f"left out (this repository lacks their content): {', '.join(missing)}")
    pathspec = ["--", ".", *(f":(exclude,literal){path}" for path in missing)]
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit,
                              *pathspec], capture_output=True)
    if archive.returncode != 0:
        raise BuildError(f"exporting {commit[:10]} from {repo} failed: "
                         f"{archive.stderr.decode(errors='replace').strip()}")
    run(["tar", "-x", "-C", str(into)], "unpacking the upstream tree", input_bytes=archive.stdout)


def apply_series(tree: Path, patches: Iterable[Path]) -> None:
    """`git apply` of each patch in order, outside any repository (none is needed, and one
    enclosing the work folder must not take the paths)."""
    env = {"GIT_CEILING_DIRECTORIES": str(tree.parent)}
    for patch in patches:
        run(["git", "apply", "--whitespace=nowarn", str(patch)],
            f"applying {patch.name}: the series and the upstream commit do not match; check "
            f"{patch.parent}", cwd=tree, env=env)


def sync_by_content(new: Path, kept: Path) -> int:
    """Make `kept` hold exactly `new`'s files, writing only those that differ (new mtime)
    and deleting those `new` lacks. Returns how many files were written or deleted."""
    changed = 0
    new_files = {path.relative_to(new) for path in new.rglob("*") if not path.is_dir()}
    for rel in sorted(new_files):
        source, target = new / rel, kept / rel
        if source.is_symlink() or target.is_symlink():
            if not (target.is_symlink() and os.readlink(target) == os.readlink(source)):
                target.unlink(missing_ok=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(source), target)
                changed += 1
            continue
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copy2(source, target)
        target.touch()  # newer than any object compiled from the file it replaces
        changed += 1
    for path in sorted(kept.rglob("*"), reverse=True):
        rel = path.relative_to(kept)
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()) and not (new / rel).is_dir():
                path.rmdir()
        elif rel not in new_files:
            path.unlink()
            changed += 1
    return changed


def prepare_source(plan: BuildPlan, repo: Path, say: Log) -> None:
    """The patched tree in `plan.src`, touching only files that changed since the last build."""
    plan.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=plan.work, prefix="src-") as tmp:
        fresh = Path(tmp) / "tree"
        export_tree(repo, plan.commit, fresh, say)
        patches = patch_files(plan.patch_dir)
        apply_series(fresh, patches)
        if plan.src.exists():
            changed = sync_by_content(fresh, plan.src)
            say(f"source: {changed} file(s) changed since the last build")
        else:
            fresh.rename(plan.src)
            say(f"source: upstream {plan.commit[:10]} + {len(patches)} patches")


# 3. dependencies ------------------------------------------------------------------------

def missing_packages(packages: Iterable[str]) -> list[str]:
    """Debian packages of `packages` that are not installed."""
    missing = []
    for package in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                capture_output=True, text=True)
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def ensure_packages(plan: BuildPlan, say: Log) -> None:
    """Install the missing build packages (apt-get, as root or through sudo)."""
    if shutil.which("dpkg-query") is None:
        say("not a Debian system: install the equivalents of "
            f"{' '.join(plan.deb_packages)} yourself (the configure step checks them)")
        return
    missing = missing_packages(plan.deb_packages)
    if not missing:
        return
    if not plan.install_deps:
        raise BuildError(f"missing Debian packages: {' '.join(missing)}; install them "
                         f"(apt-get install {' '.join(missing)}) or drop --no-install-deps")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        raise BuildError(f"missing Debian packages: {' '.join(missing)}, and neither root nor "
                         f"sudo to install them: apt-get install {' '.join(missing)}")
    say(f"installing Debian packages: {' '.join(missing)}")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    run([*sudo, "apt-get", "update", "-qq"], "apt-get update", env=apt_env)
    run([*sudo, "apt-get", "install", "-y", "-qq", *missing],
        f"installing {' '.join(missing)}", env=apt_env)


# 4-5. configure and build ---------------------------------------------------------------

def configure(plan: BuildPlan, log: Log) -> None:
    """CMake in `plan.cmake_dir`; refuses a build whose rtctl would be a stub."""
    plan.cmake_dir.mkdir(parents=True, exist_ok=True)
    out = run(["cmake", "-S", str(plan.src), "-B", str(plan.cmake_dir),
               "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
               "-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib",
               f"-DENABLE_UHD={'ON' if 'uhd' in plan.radios else 'OFF'}",
               "-DENABLE_ZEROMQ=ON", "-DENABLE_SOAPYSDR=OFF", "-DENABLE_BLADERF=OFF"],
              "configuring srsRAN with CMake", log=log)
    for line in RTCTL_ENABLED:
        if line not in out:
            raise BuildError(f"CMake did not enable rtctl (no '{line}' in its output): "
                             "ZeroMQ or nlohmann-json is missing, and a stub that refuses "
                             "[rtctl] enable = true would be built; install libzmq3-dev and "
                             f"nlohmann-json3-dev (CMake's output: {plan.log_path})")
    if "uhd" in plan.radios and "UHD" not in out:
        raise BuildError(f"CMake found no UHD: install libuhd-dev ({plan.log_path})")


COMPILING = re.compile(r"Building (?:C|CXX) object (\S+)")
"""make's line for each object it compiles (percentages are per sub-make, not overall)."""
Progress = Callable[[int, int, str], None]
"""(objects compiled, objects to compile, the latest one)."""


def build_targets(plan: BuildPlan) -> list[str]:
    return [*PROGRAMS, *(TARGETS[radio] for radio in plan.radios)]


def objects_to_compile(plan: BuildPlan) -> int:
    """How many objects the build will compile: make's dry run, which lists only what is
    out of date, so a rebuild after a patch change counts only what it touches."""
    dry = subprocess.run(["cmake", "--build", str(plan.cmake_dir), "--target",
                          *build_targets(plan), "--", "-n"], capture_output=True, text=True)
    return len(COMPILING.findall(dry.stdout))


def compile_targets(plan: BuildPlan, log: Log, on_progress: Progress) -> None:
    """`cmake --build` of the programs and RF plugins, reporting each object compiled."""
    total = objects_to_compile(plan)
    command = ["cmake", "--build", str(plan.cmake_dir), "--parallel", str(plan.jobs),
               "--target", *build_targets(plan)]
    done = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            log(line)
            lines = [*lines[-40:], line.rstrip()]
            if match := COMPILING.search(line):
                done += 1
                on_progress(done, max(total, done), match.group(1))
        code = proc.wait()
    if code != 0:
        errors = [line for line in lines if "error" in line.lower()] or lines[-4:]
        raise BuildError(f"building {', '.join(build_targets(plan))} failed (exit {code}): "
                         f"{' | '.join(errors[-4:])}; the whole log: {plan.log_path}")


# 6. install -----------------------------------------------------------------------------

def install(plan: BuildPlan) -> Stamp:
    """Programs and RF libraries into the prefix, checked with ldd, the stamp last."""
    prefix = plan.prefix.expanduser()
    bin_dir, lib_dir = prefix / "bin", prefix / "lib"
    (prefix / STAMP_FILE).unlink(missing_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    lib_dir.mkdir(parents=True, exist_ok=True)
    for program, rel in PROGRAM_PATHS.items():
        _install_file(plan.cmake_dir / rel, bin_dir / program)
    for lib in sorted((plan.cmake_dir / RF_LIB_DIR).glob("libsrsran_rf*.so*")):
        _install_file(lib, lib_dir / lib.name)
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    for path in [*(bin_dir / p for p in PROGRAMS), *lib_dir.glob("*.so*")]:
        ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
        unresolved = [line.split()[0] for line in ldd.stdout.splitlines() if "not found" in line]
        if unresolved:
            raise BuildError(f"{path} cannot find {', '.join(unresolved)} from the prefix; "
                             f"the build's run path is not $ORIGIN/../lib ({plan.log_path})")
    for program in PATCHED:
        helped = subprocess.run([str(bin_dir / program), "--help"], capture_output=True,
                                text=True, env=env)
        if "rtctl.enable" not in helped.stdout + helped.stderr:
            raise BuildError(f"{bin_dir / program} --help lists no [rtctl] options: the "
                             "series did not reach it; rebuild with a clean --work folder")
    stamp = Stamp(series_sha256=series_sha256(plan.patch_dir), upstream_commit=plan.commit,
                  patches=[path.name for path in patch_files(plan.patch_dir)],
                  built_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  radios=list(plan.radios))
    part = prefix / f".{STAMP_FILE}.part"
    part.write_text(stamp.to_json())
    part.replace(prefix / STAMP_FILE)
    return stamp


def _install_file(source: Path, target: Path) -> None:
    """Copy (a symlink as a symlink) beside `target` and rename onto it, so a running
    program keeps its old file."""
    if not source.exists():
        raise BuildError(f"the build made no {source}; see the log in the work folder")
    part = target.with_name(f".{target.name}.part")
    part.unlink(missing_ok=True)
    if source.is_symlink():
        part.symlink_to(os.readlink(source))
    else:
        shutil.copy2(source, part)
    part.replace(target)


def build(plan: BuildPlan, say: Log, on_progress: Progress) -> Stamp:
    """Every step in order; the stamp of the install."""
    plan.work.mkdir(parents=True, exist_ok=True)
    with plan.log_path.open("w") as log_file:
        def log(text: str) -> None:
            log_file.write(text)
            log_file.flush()

        repo = repository(plan, say)
        prepare_source(plan, repo, say)
        ensure_packages(plan, say)
        say("configuring (CMake)")
        configure(plan, log)
        say(f"building {', '.join(PROGRAMS)} and the {'/'.join(plan.radios)} radio "
            f"with {plan.jobs} job(s); log: {plan.log_path}")
        compile_targets(plan, log, on_progress)
        return install(plan)
