"""`hil srsran build`, step by step, on a stand-in for srsRAN_4G: a tiny CMake project laid
out like it (srsepc, srsenb, srsue, an RF library and plugin under lib/src/phy/rf) in a git
repository of its own, with a patch series that turns its rtctl on. So every step runs for
real in CI: export of a pinned commit (from a partial clone too), `git apply` of a series
inside an enclosing repository, CMake, the build of only the needed targets, the install
with a relocatable run path, the stamp, the fast rebuild, and the refusals.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from drivers.srsran.series import STAMP_FILE, Stamp, series_sha256
from hil.base.errors import HilError
from tools.srsran.build import BuildError, BuildPlan, build, sync_by_content

MAIN = """#include <stdio.h>
#include <string.h>
void rf_hello(void);
int main(int argc, char **argv) {{
  if (argc > 1 && strcmp(argv[1], "--help") == 0) {{ puts("{help}"); return 0; }}
  rf_hello();
  return 0;
}}
"""
UPSTREAM = {
    "CMakeLists.txt": "cmake_minimum_required(VERSION 3.10)\nproject(fake C)\n"
                      "add_subdirectory(lib/src/phy/rf)\nadd_subdirectory(srsepc/src)\n"
                      "add_subdirectory(srsenb/src)\nadd_subdirectory(srsue/src)\n",
    "lib/src/phy/rf/CMakeLists.txt": "add_library(srsran_rf SHARED rf.c)\n"
                                     "add_library(srsran_rf_zmq SHARED zmq.c)\n",
    "lib/src/phy/rf/rf.c": '#include <stdio.h>\nvoid rf_hello(void) { puts("rf"); }\n',
    "lib/src/phy/rf/zmq.c": "int zmq_plugin(void) { return 1; }\n",
    "lib/src/phy/sync/test/big.data": "a test-data blob a partial clone may lack\n",
    **{f"srs{p}/src/CMakeLists.txt": f"add_executable(srs{p} main.c)\n"
       f"target_link_libraries(srs{p} srsran_rf)\n" for p in ("epc", "enb", "ue")},
    **{f"srs{p}/src/main.c": MAIN.format(help="  --log.filename arg")
       for p in ("epc", "enb", "ue")},
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def fake_upstream(root: Path) -> tuple[Path, str]:
    """The stand-in's repository and its commit."""
    repo = root / "srsRAN_4G"
    for rel, text in UPSTREAM.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "upstream")
    return repo, git(repo, "rev-parse", "HEAD").strip()


def series(repo: Path, into: Path, enb_help: str = "  --rtctl.enable arg",
           cmake_says: str = "enabled") -> Path:
    """A two-patch series (srsENB, srsUE) made by editing the stand-in and diffing it."""
    into.mkdir(parents=True, exist_ok=True)
    edits = {"enb": ("srsenb/src", "rtctl: control server", enb_help),
             "ue": ("srsue/src", "rtctl: srsue control server", "  --rtctl.enable arg")}
    for number, (program, (folder, message, help_text)) in enumerate(edits.items(), 1):
        cmake = repo / folder / "CMakeLists.txt"
        said = (f"{message} enabled (ZeroMQ + nlohmann_json)" if cmake_says == "enabled"
                else "rtctl: ZeroMQ or nlohmann_json not found")
        cmake.write_text(cmake.read_text() + f'message(STATUS "{said}")\n')
        (repo / folder / "main.c").write_text(MAIN.format(help=help_text))
        (into / f"000{number}-srs{program}-rtctl.patch").write_text(git(repo, "diff"))
        git(repo, "checkout", "-q", ".")
    return into


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    return fake_upstream(tmp_path)


def plan_for(tmp_path: Path, repo: Path, commit: str, patch_dir: Path, **changes) -> BuildPlan:
    outer = tmp_path / "lab-repo"  # the work folder inside someone's git repository
    if not (outer / ".git").exists():
        outer.mkdir()
        git(outer, "init", "-q")
    return BuildPlan(prefix=tmp_path / "prefix", work=outer / "work", source=repo,
                     commit=commit, patch_dir=patch_dir, packages=(), jobs=2, **changes)


def run_build(plan: BuildPlan) -> tuple[Stamp, list[str], list[str]]:
    said, compiled = [], []
    stamp = build(plan, said.append, lambda done, total, latest: compiled.append(latest))
    return stamp, said, compiled


def test_a_build_installs_the_patched_programs_with_a_stamp_of_the_series(tmp_path, upstream):
    repo, commit = upstream
    patches = series(repo, tmp_path / "patches")
    plan = plan_for(tmp_path, repo, commit, patches)

    stamp, said, compiled = run_build(plan)

    assert stamp.series_sha256 == series_sha256(patches) and stamp.upstream_commit == commit
    on_disk = Stamp.from_json((plan.prefix / STAMP_FILE).read_text())
    assert on_disk == stamp and on_disk.patches == sorted(p.name for p in patches.iterdir())
    for program in ("srsenb", "srsue"):
        helped = subprocess.run([plan.prefix / "bin" / program, "--help"], capture_output=True,
                                text=True, env={"PATH": os.environ["PATH"]})
        assert "--rtctl.enable" in helped.stdout
    assert {p.name for p in (plan.prefix / "lib").iterdir()} == {"libsrsran_rf.so",
                                                                 "libsrsran_rf_zmq.so"}
    assert len(compiled) == 5 and any("upstream" in line for line in said)
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched


def test_the_installed_prefix_runs_wherever_it_is_moved_without_ld_library_path(tmp_path,
                                                                                upstream):
    repo, commit = upstream
    plan = plan_for(tmp_path, repo, commit, series(repo, tmp_path / "patches"))
    run_build(plan)
    shutil.rmtree(plan.work)  # nothing of the build tree is needed any more
    moved = tmp_path / "elsewhere" / "srsran"
    shutil.move(plan.prefix, moved)

    ran = subprocess.run([moved / "bin" / "srsepc"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"]})
    assert ran.returncode == 0 and ran.stdout == "rf\n"


def test_a_rebuild_after_a_patch_change_compiles_only_what_it_touches(tmp_path, upstream):
    repo, commit = upstream
    patches = series(repo, tmp_path / "patches")
    original = (patches / "0001-srsenb-rtctl.patch").read_bytes()
    plan = plan_for(tmp_path, repo, commit, patches)
    run_build(plan)

    series(repo, tmp_path / "patches-v2", enb_help="  --rtctl.enable arg  --rtctl.endpoint arg")
    shutil.copy(tmp_path / "patches-v2" / "0001-srsenb-rtctl.patch", patches)
    stamp, said, compiled = run_build(plan)
    assert [Path(obj).name for obj in compiled] == ["main.c.o"] and "srsenb" in compiled[0]
    assert "--rtctl.endpoint" in subprocess.run([plan.prefix / "bin" / "srsenb", "--help"],
                                                capture_output=True, text=True).stdout
    assert stamp.series_sha256 == series_sha256(patches)

    (patches / "0001-srsenb-rtctl.patch").write_bytes(original)  # back to the old content
    _, _, compiled = run_build(plan)
    assert len(compiled) == 1  # rebuilt, though the file went back to an older version


def test_a_partial_clone_without_a_blob_the_series_does_not_touch_still_builds(tmp_path,
                                                                                upstream):
    repo, commit = upstream
    patches = series(repo, tmp_path / "patches")
    blob = git(repo, "rev-parse", f"{commit}:lib/src/phy/sync/test/big.data").strip()
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # as a partial clone lacks it

    _, said, _ = run_build(plan_for(tmp_path, repo, commit, patches))

    assert any("left out" in line and "big.data" in line for line in said)


def test_a_build_whose_rtctl_would_be_a_stub_is_refused_and_installs_nothing(tmp_path,
                                                                            upstream):
    repo, commit = upstream
    plan = plan_for(tmp_path, repo, commit,
                    series(repo, tmp_path / "patches", cmake_says="not found"))
    with pytest.raises(BuildError, match="nlohmann-json3-dev"):
        run_build(plan)
    assert not (plan.prefix / STAMP_FILE).exists()


def test_a_series_that_does_not_apply_is_named_and_the_install_stays_as_it_was(tmp_path,
                                                                               upstream):
    repo, commit = upstream
    plan = plan_for(tmp_path, repo, commit, series(repo, tmp_path / "patches"))
    run_build(plan)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001-broken.patch").write_text("diff --git a/nothing b/nothing\n--- a/nothing\n"
                                              "+++ b/nothing\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(BuildError, match="0001-broken.patch"):
        run_build(plan_for(tmp_path, repo, commit, broken))
    assert (plan.prefix / STAMP_FILE).exists()  # a failed apply leaves the good install


@pytest.mark.parametrize(("source", "expected"), [
    ("missing", "no such folder"),
    ("plain", "not a git repository"),
    ("other-history", "has no commit"),
])
def test_a_source_that_cannot_give_the_pinned_commit_is_named(tmp_path, upstream, source,
                                                              expected):
    repo, commit = upstream
    folder = tmp_path / source
    if source == "plain":
        folder.mkdir()
    if source == "other-history":
        folder.mkdir()
        git(folder, "init", "-q")
    plan = plan_for(tmp_path, repo, commit, tmp_path)
    with pytest.raises(BuildError, match=expected) as caught:
        run_build(BuildPlan(**{**plan.__dict__, "source": folder}))
    assert str(folder) in str(caught.value)


def test_missing_build_packages_are_named_when_installing_is_off(tmp_path, upstream):
    repo, commit = upstream
    plan = plan_for(tmp_path, repo, commit, series(repo, tmp_path / "patches"),
                    install_deps=False)
    plan = BuildPlan(**{**plan.__dict__, "packages": ("vbs-hil-no-such-package",)})
    if shutil.which("dpkg-query") is None:
        pytest.fail("dpkg-query is needed (Debian)")
    with pytest.raises(BuildError, match="missing Debian packages: vbs-hil-no-such-package"):
        run_build(plan)


def test_syncing_a_tree_writes_only_what_differs(tmp_path):
    kept, new = tmp_path / "kept", tmp_path / "new"
    for tree in (kept, new):
        (tree / "d").mkdir(parents=True)
        (tree / "same.c").write_text("same")
    (kept / "d" / "changed.c").write_text("old")
    (new / "d" / "changed.c").write_text("new")
    (kept / "gone.c").write_text("gone")
    (new / "added.c").write_text("added")
    os.utime(kept / "same.c", (1, 1))
    os.utime(kept / "d" / "changed.c", (1, 1))

    assert sync_by_content(new, kept) == 3

    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*.c")) == [
        "added.c", "d/changed.c", "same.c"]
    assert (kept / "same.c").stat().st_mtime == 1
    assert (kept / "d" / "changed.c").stat().st_mtime > 1
    assert (kept / "d" / "changed.c").read_text() == "new"


def test_the_stamp_reads_back_and_refuses_what_is_not_one():
    stamp = Stamp("a" * 64, "c" * 40, ["0001.patch"], "2026-01-01T00:00:00Z")
    assert Stamp.from_json(stamp.to_json()) == stamp
    for text in ("[]", json.dumps({"series": 1})):
        with pytest.raises(ValueError):
            Stamp.from_json(text)
    assert issubclass(BuildError, HilError)
