"""`make mutation`: apply each reviewed single-line mutation of the safety code (listed in
`mutations.toml`) in a scratch copy of the repo, run the tests that must catch it, and print
a table (mutation, killed by, or SURVIVED) with the kill rate. Exit 1 on any survivor, on a
snippet that no longer matches its file exactly once, or when the unmutated subsets fail.

Why not mutmut or cosmic-ray: the list is a reviewed set of literal edits, each tied to the
few tests that must catch it. mutmut 3 generates every mutant of whole functions itself and
runs them through its own trampoline (no literal, reviewed edit; no per-mutant test subset);
cosmic-ray needs a session database and its own operators over whole modules, not a literal
replacement of one line. Both would also mutate far more than the red-line code. This runner
only copies, edits one snippet, runs pytest on a subset, and restores.

Usage: python -m tests.mutation.run [--jobs 2] [--only ID ...] [--timeout S] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST = Path(__file__).with_name("mutations.toml")


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # KILLED, SURVIVED, NO MATCH
    killed_by: str
    seconds: float


def load(path: Path = LIST) -> list[Mutation]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out: list[Mutation] = []
    seen: set[str] = set()
    for row in data["mutation"]:
        m = Mutation(
            id=str(row["id"]),
            file=str(row["file"]),
            original=str(row["original"]),
            replacement=str(row["replacement"]),
            tests=tuple(str(t) for t in row["tests"]),
            why=str(row["why"]),
        )
        if m.id in seen:
            raise SystemExit(f"{path}: duplicate mutation id {m.id!r}")
        if m.original == m.replacement or not m.tests:
            raise SystemExit(f"{path}: mutation {m.id!r} changes nothing or names no tests")
        seen.add(m.id)
        out.append(m)
    return out


def repo_files(root: Path) -> list[str]:
    """Tracked files plus new, not ignored ones (a branch's uncommitted tests count too)."""
    res = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return [f for f in res.stdout.decode().split("\0") if f and (root / f).is_file()]


def scratch_copy(root: Path, dest: Path) -> Path:
    for rel in repo_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def run_pytest(cwd: Path, tests: Iterable[str], timeout_s: float) -> tuple[int | None, str]:
    """(exit code or None on timeout, output). The scratch copy comes first on sys.path, ahead
    of the editable install of the real checkout."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("ATLAS_CHAOS_KILLS", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *tests]
    try:
        res = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        return None, out
    return res.returncode, res.stdout + res.stderr


def imported_from(cwd: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    code = (
        "import atlas_actors, supervisor; print(atlas_actors.__file__); print(supervisor.__file__)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return res.stdout.split()


# pytest's short summary: "FAILED node::id - message" (not the "ERROR    logger:..." log lines)
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S.*?)(?: - .*)?$", re.M)


def first_failure(output: str) -> str:
    m = _FAILED.search(output)
    return m.group(1) if m else "(pytest failed, no test named)"


def check_matches(root: Path, muts: list[Mutation]) -> dict[str, str]:
    """Mutation id -> problem, for snippets that do not occur exactly once."""
    problems: dict[str, str] = {}
    for m in muts:
        path = root / m.file
        if not path.is_file():
            problems[m.id] = f"{m.file} does not exist (moved?)"
            continue
        n = path.read_text(encoding="utf-8").count(m.original)
        if n != 1:
            problems[m.id] = f"snippet occurs {n} times in {m.file} (must be exactly once)"
    return problems


def apply_and_run(work: Path, m: Mutation, timeout_s: float) -> Outcome:
    path = work / m.file
    pristine = path.read_text(encoding="utf-8")
    t0 = time.monotonic()
    try:
        path.write_text(pristine.replace(m.original, m.replacement, 1), encoding="utf-8")
        code, out = run_pytest(work, m.tests, timeout_s)
    finally:
        path.write_text(pristine, encoding="utf-8")
    took = time.monotonic() - t0
    if code is None:
        return Outcome(m, "KILLED", f"timeout after {timeout_s:.0f}s", took)
    if code == 0:
        return Outcome(m, "SURVIVED", "", took)
    if code in (1, 2):  # tests failed / errored at collection (e.g. the mutant does not import)
        return Outcome(m, "KILLED", first_failure(out), took)
    return Outcome(m, "SURVIVED", f"pytest exit {code}: {out.strip().splitlines()[-1:]}", took)


def table(outcomes: list[Outcome]) -> str:
    w_id = max(len("mutation"), *(len(o.mutation.id) for o in outcomes))
    w_st = len("SURVIVED")
    lines = [f"{'mutation':<{w_id}}  {'result':<{w_st}}  {'s':>5}  killed by / note"]
    lines.append("-" * (w_id + w_st + 30))
    for o in outcomes:
        lines.append(
            f"{o.mutation.id:<{w_id}}  {o.status:<{w_st}}  {o.seconds:5.1f}  {o.killed_by}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__)
    p.add_argument("--jobs", type=int, default=2, help="mutations run at once (default 2)")
    p.add_argument("--only", nargs="*", help="run only these mutation ids")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutation run")
    p.add_argument("--list", action="store_true", help="print the list and exit")
    p.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    a = p.parse_args(argv)

    muts = load()
    if a.only:
        unknown = set(a.only) - {m.id for m in muts}
        if unknown:
            print(f"unknown mutation ids: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        muts = [m for m in muts if m.id in a.only]
    if a.list:
        for m in muts:
            print(f"{m.id}: {m.file}: {m.why}\n    tests: {' '.join(m.tests)}")
        return 0

    started = time.monotonic()
    problems = check_matches(ROOT, muts)
    runnable = [m for m in muts if m.id not in problems]
    outcomes: list[Outcome] = [
        Outcome(m, "NO MATCH", problems[m.id], 0.0) for m in muts if m.id in problems
    ]
    jobs = max(1, a.jobs)
    with tempfile.TemporaryDirectory(prefix="atlas-mutation-") as tmp:
        workers = [scratch_copy(ROOT, Path(tmp) / f"w{i}") for i in range(jobs)]
        for work in workers:
            where = imported_from(work)
            if not all(Path(w).is_relative_to(work) for w in where):
                print(f"the scratch copy imports the product from {where}, not from {work}")
                return 1
        if not a.no_baseline:
            subset = sorted({t for m in runnable for t in m.tests})
            code, out = run_pytest(workers[0], subset, a.timeout * 2)
            if code != 0:
                print(out[-4000:])
                print("the unmutated test subsets do not pass: no mutation verdict is meaningful")
                return 1
            print(f"baseline: {len(subset)} test targets green unmutated", flush=True)
        free = list(workers)
        lock = threading.Lock()

        def one(m: Mutation) -> Outcome:
            with lock:
                work = free.pop()
            try:
                o = apply_and_run(work, m, a.timeout)
            finally:
                with lock:
                    free.append(work)
            print(f"  {m.id}: {o.status} {o.killed_by} ({o.seconds:.1f}s)", flush=True)
            return o

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes += list(pool.map(one, runnable))
    order = {m.id: i for i, m in enumerate(muts)}
    outcomes.sort(key=lambda o: order[o.mutation.id])
    killed = sum(o.status == "KILLED" for o in outcomes)
    print()
    print(table(outcomes))
    print()
    elapsed = time.monotonic() - started
    print(
        f"kill rate: {killed}/{len(outcomes)} = {100.0 * killed / max(1, len(outcomes)):.1f} %"
        f"  ({elapsed:.0f} s, {jobs} at a time)"
    )
    bad = [o for o in outcomes if o.status != "KILLED"]
    for o in bad:
        if o.status == "NO MATCH":
            print(
                f"NO MATCH {o.mutation.id}: {o.killed_by} - update its `file`/`original` "
                f"in {LIST.relative_to(ROOT)}"
            )
        else:
            print(f"SURVIVED {o.mutation.id}: {o.mutation.why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
