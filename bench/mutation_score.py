"""Mutation score of the modules where a silent bug costs most, against the fast tier (tests/unit).

mutmut (3.x) changes the code in small ways (a `<` for a `<=`, a constant, a dropped argument), one
change at a time, and runs the unit tests that reach the changed function; a mutant that no test
fails "survived". The score is the share killed. Survivors are listed with why they survive: an
equivalent mutant (the behaviour is the same) or a gap (a test is missing). A survivor the table
below does not explain is printed as UNEXPLAINED: look at it, then kill it with a test or explain it.

It runs in a copy of the package and tests in a temporary directory, with mutmut's configuration in
that copy's setup.cfg, so the work tree is never mutated and pyproject.toml needs no `[tool.mutmut]`.
mutmut runs in a PID namespace of its own (`unshare`), so that a mutant of the code that ends a job's
processes, taking every process for the job's, can end only the mutation run's processes.

    .venv/bin/python bench/mutation_score.py                   # every module below (several minutes)
    .venv/bin/python bench/mutation_score.py metrics archive   # some of them
    .venv/bin/python bench/mutation_score.py --list            # the module names

Exit status: 0 when the score over what ran is at least --target (85%), 1 below it, 2 if mutmut failed.
Not part of every CI run: it takes minutes.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    path: str
    # mutmut's mangled function keys to keep ("x_func", "xǁClassǁmethod"); None keeps the module's every function.
    functions: tuple[str, ...] | None = None


TARGETS: dict[str, Target] = {
    "archive": Target("prefect_braket/core/archive.py"),
    "cost": Target("prefect_braket/quantum/cost.py"),
    "budget": Target("prefect_braket/jobs/budget.py"),
    "metrics": Target("prefect_braket/core/metrics.py"),
    # The engine's client-token claim: a retry must find the job the first try created, never a second.
    "engine-claims": Target("prefect_braket/backends/local/engine.py", ("xǁLocalEngineǁcreate_job",)),
    "claim-store": Target("prefect_braket/backends/local/store.py", ("x_claimed_arn", "x__read_claim")),
    # Which processes are a job's, and ending them all.
    "processes": Target("prefect_braket/backends/local/processes.py",
                        ("x_pid_alive", "x_job_processes", "x__recorded_group", "x__scan_proc", "x__descends_from",
                         "x_signal_processes", "x_end_processes")),
    "log-forwarding": Target("prefect_braket/orchestration/watcher.py",
                             ("x_max_log_lines_setting", "xǁJobWatcherǁ_read_log", "xǁJobWatcherǁ_forward",
                              "xǁJobWatcherǁ_close_log", "xǁJobWatcherǁ_log_changes")),
    # A resumed run, or a paused call's next, goes on from where the last stopped: no iteration twice, none lost.
    "checkpoint-resume": Target("prefect_braket/variational/loop.py",
                                ("xǁLoopStateǁto_checkpoint", "xǁLoopStateǁfrom_checkpoint", "xǁLoopStateǁsince",
                                 "xǁLoopStateǁadvance", "x_optimize", "x__optimize_with_scipy")),
    "checkpoint-files": Target("prefect_braket/variational/checkpoints.py"),
}


# Survivors looked at and explained: (module, mangled function glob, text of the mutated line (a regex), why).
EXPLAINED: list[tuple[str, str, str, str]] = [
    # -- the wording of a message, not what the code does --------------------------------------------------------
    ("*", "*", r"^\s*(raise \w+\()?f?[\"'].*XX|XX.*[\"']\)?$", "wording: a message's text (XX...XX), not behaviour"),
    ("*", "*", r"(logger|self\.logger)\.\w+\(None|\.info\(\s*$", "wording: what a log line says"),
    ("*", "*", r"raise [\w.]+\((None|\w+, None|\w+, \)|None, \"|\"[^\"]*\"\))|[A-Z ]{12,}\"",
     "wording: an error's message or its member name, not whether it is raised"),
    ("*", "*", r"^\s*f?\"[^\"]*\"\)?$", "wording: a line of a message that goes on over several lines"),
    ("archive", "*", r"_refused\(member, \"[^a-z\"]+\"\)", "wording: a refusal's reason, in capitals"),
    ("archive", "x_safe_extract", r"_plan\(tar, None", "wording: the archive's name, which refusals quote"),
    ("claim-store", "x__read_claim", r"raise damaged\(|arn\[:101\]",
     "wording: what the damaged-claim error says (the claim, what is wrong with it, the fix); it is raised either way"),
    ("cost", "xǁPriceTableǁtask_cost", r"self\.table\.get\((None|'AS_OF')\)\}",
     "wording: the price table's date, which the message quotes"),
    ("budget", "xǁSpendingLedgerǁ_read", r"type\(None\)", "wording: the error's type name in the message"),
    ("archive", "*", r"O_\w+ & os\.O_",
     "gap (defence in depth): O_RDONLY is 0, so this drops O_DIRECTORY/O_NOFOLLOW; only a link raced into the "
     "new, empty destination would tell, and no unit test races one into a directory's place"),
    # -- equivalent: the behaviour cannot differ ------------------------------------------------------------------
    ("archive", "x__plan", r"range\(len\(parts\)\)",
     "equivalent: depth 0 is the archive's root, (), which the namespace holds from the start"),
    ("archive", "x_safe_extract", r"is_dir\(follow_symlinks=(None|True)\)",
     "equivalent: what is cleaned up is what the extraction wrote, directories and regular files, never a link"),
    ("archive", "xǁ_BoundedReadsǁseek", r"seek\(offset, \)",
     "equivalent: tarfile, reading a seekable file, seeks only to absolute offsets"),
    ("cost", "xǁPriceTableǁtask_cost", r"duration_ms or 1\.0",
     "equivalent: 1 ms is under any minimum billed time (Braket's is 3 s), so the minimum is billed either way"),
    ("budget", "xǁSpendingLedgerǁreserve", r">= limit_usd \+ 1e-12",
     "equivalent: differs only for a total equal to the limit plus 1e-12 to the last bit"),
    ("budget", "xǁSpendingLedgerǁupdate", r"\"(XX\.lockXX|\.LOCK)\"",
     "equivalent: every copy of a ledger derives the same lock file name, whatever it is"),
    ("claim-store", "x__read_claim", r"return None, 1\.0$",
     "equivalent: a missing claim's age is never read (its caller stops at the missing ARN)"),
    ("checkpoint-files", "x_load_checkpoint", r"fsspec\.open\(path, \)",
     "equivalent: without \"r\" fsspec opens it \"rb\", and the JSON reader takes bytes as well"),
    ("processes", "x__scan_proc", r'read_bytes\(\) \+ b"XX\\0XX"',
     "equivalent on Linux: /proc/<pid>/environ ends every variable with a NUL, the last one too"),
    ("processes", "x__scan_proc", r"\"(XXXXX|x)\"\)",
     "unstageable: X (dead) is a state a process shows for an instant while the kernel releases it"),
    ("processes", "x__scan_proc", r"^\s*break$",
     "a race no unit test stages: a process that ends, or turns unreadable, between the listing and its reading "
     "(as root every process can be read); the zombie case is staged"),
    ("processes", "x_end_processes", r"job_processes\(instance, None, supervisor\)",
     "unreachable here: the recorded group stands in only without /proc (not Linux)"),
    ("processes", "x_end_processes", r"monotonic\(\) <= deadline|time\.sleep\(1\.0[12]\)",
     "equivalent in outcome: the clock equal to the deadline to the nanosecond, or a slower poll; the same signals"),
    ("processes", "x_end_processes", r"^\s*targets = None$",
     "gap: one SIGKILL round ends what it found; the scans after it find what the job started while it was being "
     "ended, which no unit test stages"),
    ("archive", "x_pack_directory", r"follow_symlinks=(None|True)",
     "equivalent: links are taken by the is_symlink() branch before, so following them here changes nothing"),
    ("processes", "x_pid_alive", r"rsplit|split\(\)\[1\]|\"(XXZXX|z)\"",
     "equivalent on Linux: a zombie's /proc/<pid>/cmdline is empty, so the marker check says False anyway"),
    ("processes", "x_pid_alive", r"return (True|False)$",
     "unreachable here: the PermissionError and no-/proc branches (another user's pid, not Linux) as root on Linux"),
    ("claim-store", "x_claimed_arn", r"age >= |\* 4|missing_ok=(None|False)|monotonic\(\) >= deadline",
     "equivalent in outcome: a claim 3-4 grace periods old is found abandoned before the grace deadline either "
     "way (only the wait differs); the claim is there to unlink in a single-threaded test"),
    ("engine-claims", "xǁLocalEngineǁcreate_job", r"claim\.unlink\((missing_ok=(None|False))?\)",
     "defence in depth: the claim this call wrote is there to unlink when its creation fails, unless another "
     "process cleared it as abandoned meanwhile, which no single-threaded test stages"),
    ("log-forwarding", "xǁJobWatcherǁ_read_log", r"strict=None\):|\), \):$",
     "equivalent: strict=False is zip's default (the timestamps are padded with None to the lines anyway)"),
    ("checkpoint-resume", "x__optimize_with_scipy",
     r"np\.asarray\((state\.initial.*state\.parameters|x), (dtype=None)?\)",
     "equivalent: SciPy makes an integer start float itself and hands the objective float arrays"),
    ("checkpoint-resume", "x__optimize_with_scipy", r'float\("NAN"\)', "equivalent: float() reads NaN in any case"),
    ("checkpoint-resume", "x__optimize_with_scipy", r'"(XXmaxiterXX|MAXITER)"',
     "defence in depth: the objective's own limit stops SciPy at the same evaluation, not converged; maxiter "
     "only lets SciPy stop itself there"),
    # -- reached only where mutmut cannot see -----------------------------------------------------------------------
    ("budget", "xǁJobBudgetǁ_stop", r".", "reached only in a process of its own (it ends its process): "
     "tests/unit/jobs/test_budget.py runs it in one, which imports the package unmutated"),
    ("budget", "xǁJobBudgetǁ_watch", r".", "reached only in a job's process, where its watchdog thread runs: "
     "tests/unit/jobs/test_budget.py runs one, which imports the package unmutated"),
    ("budget", "xǁJobBudgetǁstart", r".", "reached only in a job's process (it sets the job's environment and "
     "starts the watchdog there): tests/unit/jobs/test_budget.py runs one, which imports the package unmutated"),
    ("archive", "x__pack_file", r"O_NOFOLLOW|O_NONBLOCK",
     "a race no unit test stages (a link or fifo put in a listed file's place between listing and opening)"),
]

SANDBOX = """


@pytest.fixture(autouse=True)
def _mutation_sandbox(tmp_path_factory, monkeypatch):  # added by bench/mutation_score.py
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
"""

GUARD = Path(__file__).resolve().parent / "mutation_guard"  # on the run's PYTHONPATH: see its sitecustomize.py

# The namespace's init: mutmut waits for its workers by pid, and as init it would also be handed the
# tests' orphans, so a process of its own is init and reaps them.
INIT = """import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
while True:
    pid, status = os.wait()
    if pid == child.pid:
        sys.exit(os.waitstatus_to_exitcode(status))
"""

DIFF_LINE = re.compile(r"^\+(?!\+\+)(.*)$", re.MULTILINE)


def explain(module: str, function: str, mutated_line: str) -> str | None:
    for name, glob, pattern, why in EXPLAINED:
        if fnmatch.fnmatch(module, name) and fnmatch.fnmatch(function, glob) and re.search(pattern, mutated_line):
            return why
    return None


def prepare(work: Path, targets: dict[str, Target], max_children: int) -> None:
    """A copy of the package and its tests, with mutmut's configuration in its setup.cfg."""
    shutil.copytree(REPO / "prefect_braket", work / "prefect_braket",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "pyproject.toml", work / "pyproject.toml")
    # Each test runs in a directory of its own: mutmut runs the tests inside its `mutants/` copy, and a
    # mutant that turns `os.scandir(destination)` into `os.scandir(None)` would clean the working directory.
    with open(work / "tests" / "conftest.py", "a") as conftest:
        conftest.write(SANDBOX)
    only = "\n    ".join(sorted({t.path for t in targets.values()}))
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = prefect_braket\n"
        f"only_mutate =\n    {only}\n"
        "pytest_add_cli_args_test_selection = tests/unit\n"
        # -x: one failing test kills the mutant; no cache: the copy is thrown away anyway.
        # test_layers.py is left out: a mutated module imports mutmut's trampoline, which that test
        # rightly refuses in the in-job runtime; it checks imports, not behaviour.
        "pytest_add_cli_args =\n    -x\n    -q\n    -p\n    no:cacheprovider\n    --ignore=tests/unit/test_layers.py\n"
        "use_git_change_detection = false\n"
    )


def pid_namespace() -> list[str] | None:
    """The command prefix that runs mutmut in a PID namespace of its own, or None where none can be made.

    A mutant of `job_processes` or `end_processes` that takes every process for the job's signals
    every process it can see. In the namespace it sees only the mutation run's, and `GUARD` keeps it
    from mutmut and the namespace's init (`INIT`): its test fails and the run goes on. Outside one it
    ended the shell that started the run."""
    prefix = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c", INIT]
    if not shutil.which("unshare"):
        return None
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def mutant_patterns(targets: dict[str, Target]) -> list[str]:
    patterns = []
    for target in targets.values():
        module = target.path.removesuffix(".py").replace("/", ".")
        for function in target.functions or ("*",):
            patterns.append(f"{module}.{function}__mutmut_*")
    return patterns


def results(work: Path, targets: dict[str, Target]) -> dict[str, dict[str, int]]:
    """Exit code by mutant name, per target (names outside a target's functions left out)."""
    by_target: dict[str, dict[str, int]] = {}
    for name, target in targets.items():
        meta_path = work / "mutants" / (target.path + ".meta")
        codes = json.loads(meta_path.read_text())["exit_code_by_key"] if meta_path.exists() else {}
        module = target.path.removesuffix(".py").replace("/", ".")
        keep = [f"{module}.{f}__mutmut_*" for f in (target.functions or ("*",))]
        by_target[name] = {m: c for m, c in codes.items() if any(fnmatch.fnmatch(m, k) for k in keep)}
    return by_target


def function_source(text: str, name: str) -> list[str]:
    """The lines of the function `name` (mutmut's mangled name) in a mutated module's text."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(f"def {name}(") or stripped.startswith(f"async def {name}("):
            indent = len(line) - len(stripped)
            end = start + 1
            # The function ends at the next line as far left as its `def`, other than the close of a
            # signature spread over several lines.
            while end < len(lines) and (not lines[end].strip() or lines[end].lstrip().startswith(")")
                                        or len(lines[end]) - len(lines[end].lstrip()) > indent):
                end += 1
            return lines[start + 1:end]
    return []


def diff_of(work: Path, path: str, mutant: str) -> str:
    """The first line the mutant changed, read from mutmut's copy of the module (no `mutmut show` per
    mutant: it takes seconds each)."""
    text = (work / "mutants" / path).read_text()
    function = mutant.rsplit(".", 1)[1]
    original = function_source(text, function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
    mutated = function_source(text, function)
    import difflib

    changed = [line[1:].strip() for line in difflib.unified_diff(original, mutated, lineterm="", n=0)
               if line.startswith("+") and not line.startswith("+++")]
    return changed[0] if changed else "(a line removed)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="names from --list; default: all")
    parser.add_argument("--list", action="store_true", help="print the module names and exit")
    parser.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--target", type=float, default=85.0, help="the lowest passing score, in percent")
    parser.add_argument("--keep", action="store_true", help="keep the working copy (its path is printed)")
    parser.add_argument("--report-only", type=Path, metavar="COPY",
                        help="report from a working copy kept earlier (--keep), even one whose run was stopped: "
                             "mutants not run yet are counted apart")
    args = parser.parse_args()
    if args.list:
        for name, target in TARGETS.items():
            print(f"{name:18} {target.path} {', '.join(target.functions or ('(every function)',))}")
        return 0
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(TARGETS)}")
    targets = {m: TARGETS[m] for m in (args.modules or TARGETS)}
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if not mutmut:
        print("mutmut is not installed: `uv pip install --python .venv/bin/python 'mutmut>=3.3'`", file=sys.stderr)
        return 2

    if args.report_only:
        return report(args.report_only, targets, results(args.report_only, targets), float("nan"), args)
    sandbox = pid_namespace()
    if sandbox is None and "processes" in targets:
        print("The 'processes' module's mutants signal the processes they find, and a mutant that finds every "
              "process ends this machine's session: it runs only in a PID namespace of its own, which "
              "`unshare --pid --fork --mount-proc` could not make here (it needs root or user namespaces on "
              "Linux). Leave it out: name the other modules (--list).", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="prefect-braket-mutation-"))
    started = time.monotonic()
    try:
        prepare(work, targets, args.max_children)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD), os.environ.get("PYTHONPATH")]))}
        run = subprocess.run([*(sandbox or []), mutmut, "run", "--max-children", str(args.max_children),
                              *mutant_patterns(targets)], cwd=work, env=env, capture_output=True, text=True)
        (work / "mutmut-run.log").write_text(run.stdout + run.stderr)
        by_target = results(work, targets)
        if not any(code is not None for codes in by_target.values() for code in codes.values()):
            print(f"mutmut produced no results (exit {run.returncode}):\n{(run.stdout + run.stderr)[-3000:]}")
            return 2
        elapsed = time.monotonic() - started
        return report(work, targets, by_target, elapsed, args)
    finally:
        if args.keep:
            print(f"working copy kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(work: Path, targets: dict[str, Target], by_target: dict[str, dict[str, int]], elapsed: float,
           args: argparse.Namespace) -> int:
    # mutmut's exit codes: 1 (and 3) killed; 0 survived; 5, 33 no test reached it; 36, 24, 152, 255 timeout.
    killed_codes, survived_codes, untested_codes = {1, 3}, {0}, {5, 33}
    total_killed = total_scored = 0
    survivors: list[tuple[str, str, str, str | None]] = []
    print(f"{'module':18} {'killed':>7} {'survived':>8} {'no test':>7} {'timeout':>7} {'score':>7} {'not run':>8}")
    for name, codes in by_target.items():
        not_run = sum(c is None for c in codes.values())
        killed = sum(c in killed_codes for c in codes.values())
        survived = [m for m, c in codes.items() if c in survived_codes]
        untested = [m for m, c in codes.items() if c in untested_codes]
        # A mutant that hangs the tests is caught (the run times out), as mutmut counts it.
        timeouts = sum(c is not None and c not in killed_codes | survived_codes | untested_codes
                       for c in codes.values())
        scored = killed + timeouts + len(survived) + len(untested)
        total_killed += killed + timeouts
        total_scored += scored
        score = 100.0 * (killed + timeouts) / scored if scored else float("nan")
        print(f"{name:18} {killed:7} {len(survived):8} {len(untested):7} {timeouts:7} {score:6.1f}% {not_run:8}")
        for mutant in sorted(survived + untested, key=lambda m: (m.rsplit("__mutmut_", 1)[0],
                                                                 int(m.rsplit("_", 1)[1]))):
            line = diff_of(work, targets[name].path, mutant)
            function = mutant.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]
            why = explain(name, function, line) if mutant in survived else "gap: no unit test reaches this function"
            survivors.append((name, mutant, line, why))
    overall = 100.0 * total_killed / total_scored if total_scored else float("nan")
    print(f"{'overall':18} {total_killed:7} {'':8} {'':7} {'':7} {overall:6.1f}%   "
          f"({total_scored} mutants, {elapsed:.0f} s, max-children {args.max_children})")
    if survivors:
        print("\nSurvivors:")
        for name, mutant, line, why in survivors:
            print(f"  {mutant.rsplit('.', 1)[1]}  [{name}]\n      {line[:110]}\n      -> {why or 'UNEXPLAINED'}")
    return 0 if overall >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
