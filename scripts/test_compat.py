"""`make test-compat`: run every chapter on the oldest and the newest stacks the book supports.

Usage (from the repository root; the Makefile runs the first form):

    python scripts/test_compat.py                 # both environments (compat/*.txt)
    python scripts/test_compat.py floor           # one of them
    python scripts/test_compat.py --unpinned      # the newest releases on the registry, unpinned
                                                  # (the weekly CI job: drift shows up that week)

Each environment is a virtual environment under .venv-compat/<name>, made with the Python its
requirements file names on its first line (`# python 3.10`) and holding only what the notebooks
import, at the versions that file pins. The wheels are downloaded once into a cache
($COMPAT_WHEELHOUSE, default ~/.cache/pytorch-by-example/wheels/<name>) and installed from
there; an environment whose requirements did not change since it was made is reused as it is.
The registry's torch for Linux is a CUDA build (~3 GB with its nvidia-* wheels); pip on the
project's machines carries a global constraint that caps torch, which only the newest
environment lifts (PIP_CONSTRAINT=/dev/null), for its own install.

Then scripts/run_chapters.py runs every chapter in each environment, the environments side by
side, one CPU thread each. A chapter passes when every cell runs, every cell tagged
`raises-exception` raises the exception type it stores, nothing is written to stderr, and every
assertion holds (the claims the prose relies on). Stored outputs that differ are counted per
chapter and listed in _build/test-compat.txt, not failed on: digits legitimately move between
versions. Exit status 0 when every chapter passed in every environment.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPAT_DIR = ROOT / "compat"
VENV_ROOT = ROOT / ".venv-compat"
BUILD_DIR = ROOT / "_build"
REPORT = BUILD_DIR / "test-compat.txt"
RUNNER = ROOT / "scripts" / "run_chapters.py"
WHEELHOUSE = Path(os.environ.get("COMPAT_WHEELHOUSE",
                                 Path.home() / ".cache" / "pytorch-by-example" / "wheels"))
# What the notebooks import. The unpinned environment takes the newest release of each.
NOTEBOOK_PACKAGES = ["torch", "numpy", "matplotlib"]
# Environments that may install a torch newer than the machine's pip constraint allows.
LIFTS_CONSTRAINT = {"newest", "unpinned"}


def environments():
    """{name: requirements file} for compat/<name>.txt."""
    return {p.stem: p for p in sorted(COMPAT_DIR.glob("*.txt"))}


def wanted_python(requirements):
    """The Python version an environment is made with: `# python 3.10` on its first line."""
    first = requirements.read_text(encoding="utf-8").splitlines()[0]
    match = re.match(r"#\s*python\s+(\d+\.\d+)\s*$", first, re.IGNORECASE)
    if not match:
        sys.exit(f"{requirements}: the first line must be `# python 3.X`")
    return match.group(1)


def find_python(version):
    """An interpreter of that version: $COMPAT_PYTHON_3_10, python3.10 on PATH, or pyenv's."""
    override = os.environ.get(f"COMPAT_PYTHON_{version.replace('.', '_')}")
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [override]
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"),
                         reverse=True)
    candidates.append(shutil.which(f"python{version}"))  # last: it may be a pyenv shim
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version[:5])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.startswith(version):
            return candidate
    sys.exit(f"no Python {version} found for the compatibility environment: install it "
             f"(e.g. `pyenv install {version}`) or set COMPAT_PYTHON_{version.replace('.', '_')}")


def pip_env(name):
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if name in LIFTS_CONSTRAINT:
        env["PIP_CONSTRAINT"] = "/dev/null"  # an empty constraint file replaces the global one
    return env


def run(command, env=None, log=None):
    print("   $", " ".join(str(c) for c in command), flush=True)
    proc = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True)
    if log is not None:
        log.write(proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, command))}\n"
                 + (proc.stdout + proc.stderr)[-3000:])
    return proc


def make_environment(name, requirements, unpinned=False):
    """Create (or reuse) .venv-compat/<name> with the packages the notebooks import."""
    venv = VENV_ROOT / name
    python = venv / "bin" / "python"
    version = "3.13" if unpinned else wanted_python(requirements)
    pins = [] if unpinned else [
        line.split("#")[0].strip() for line in requirements.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    fingerprint = hashlib.sha256(json.dumps([version, pins, unpinned]).encode()).hexdigest()
    stamp = venv / ".compat-installed"
    if not unpinned and python.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        print(f"== {name}: {venv.relative_to(ROOT)} is up to date", flush=True)
        return python
    start = time.perf_counter()
    print(f"== {name}: making {venv.relative_to(ROOT)} with Python {version}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    VENV_ROOT.mkdir(exist_ok=True)
    run([find_python(version), "-m", "venv", venv])
    env = pip_env(name)
    BUILD_DIR.mkdir(exist_ok=True)
    with open(BUILD_DIR / f"test-compat-{name}-install.log", "w") as log:
        if unpinned:
            run([python, "-m", "pip", "install", "--upgrade", *NOTEBOOK_PACKAGES], env, log)
        else:
            wheels = WHEELHOUSE / name
            wheels.mkdir(parents=True, exist_ok=True)
            # Downloads only what the wheelhouse lacks; the install then needs no network.
            run([python, "-m", "pip", "download", "--dest", wheels, *pins], env, log)
            run([python, "-m", "pip", "install", "--no-index", "--find-links", wheels, *pins],
                env, log)
    stamp.write_text(fingerprint)
    print(f"== {name}: ready in {time.perf_counter() - start:.0f} s", flush=True)
    return python


def run_everywhere(pythons, chapters):
    """Run every chapter in each environment, the environments side by side."""
    procs = {}
    for name, python in pythons.items():
        command = [str(python), str(RUNNER), *chapters, "--label", name,
                   "--json", str(BUILD_DIR / f"test-compat-{name}.json")]
        procs[name] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    outputs = {name: proc.communicate()[0] for name, proc in procs.items()}
    return {name: (procs[name].returncode, outputs[name]) for name in procs}


def differing_table(names):
    """Per chapter, how many stored outputs differ in each environment."""
    reports = {}
    for name in names:
        path = BUILD_DIR / f"test-compat-{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            reports[name] = {r["notebook"]: r for r in data["chapters"]}
    chapters = sorted({c for r in reports.values() for c in r})
    lines = ["Stored outputs that differ from a re-run, per chapter (not failures):",
             f"{'chapter':<28}" + "".join(f"{n:>10}" for n in names)]
    for chapter in chapters:
        cells = [reports.get(n, {}).get(chapter) for n in names]
        lines.append(f"{chapter:<28}" + "".join(
            f"{len(c['differing']) if c else '-':>10}" for c in cells))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="environments (default: all in compat/)")
    parser.add_argument("--chapters", nargs="*", default=[], help="chapter prefixes")
    parser.add_argument("--unpinned", action="store_true",
                        help="the newest releases on the registry, on the newest Python")
    parser.add_argument("--prepare", action="store_true",
                        help="only make the environments (download and install), run nothing")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.unpinned:
        chosen = {"unpinned": None}
    else:
        available = environments()
        unknown = [n for n in args.names if n not in available]
        if unknown:
            sys.exit(f"no compat/{unknown[0]}.txt (have {sorted(available)})")
        chosen = {n: available[n] for n in (args.names or available)}
    pythons = {n: make_environment(n, req, unpinned=args.unpinned) for n, req in chosen.items()}
    installed = time.perf_counter() - start
    if args.prepare:
        print(f"environments ready in {installed:.0f} s: {', '.join(pythons)}")
        return
    results = run_everywhere(pythons, args.chapters)
    ran = time.perf_counter() - start - installed

    text = "\n\n".join(out.strip() for _, out in results.values())
    text += "\n\n" + differing_table(list(chosen))
    text += (f"\n\nmake test-compat: environments ready in {installed:.0f} s, chapters run in "
             f"{ran:.0f} s (side by side)\n")
    BUILD_DIR.mkdir(exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    print(text)
    failed = [name for name, (code, _) in results.items() if code]
    if failed:
        sys.exit(f"make test-compat FAILED in {', '.join(failed)}: see {REPORT.relative_to(ROOT)}")
    print(f"make test-compat passed; report in {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
