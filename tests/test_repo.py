"""Promises about what surrounds the book: CI and publishing, Binder, lint, page weight, figures.

The browser tests are in test_site.py; the notebooks' own promises (python3 kernelspec, only
torch/numpy/matplotlib/stdlib imports, which Colab has) are in test_notebooks.py.
"""

import ast
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import (
    BUILD_DIR,
    CHAPTER_NOTEBOOKS,
    HTML_DIR,
    ROOT,
    parsed_code_cells,
    read_notebook,
    rel,
)

BIN = Path(sys.executable).parent
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml")) + sorted(WORKFLOW_DIR.glob("*.yaml"))
BINDER_DIR = ROOT / "binder"
REQUIREMENTS = [ROOT / "requirements.txt", BINDER_DIR / "requirements.txt"]
CI_RUN = ROOT / ".ci" / "run"
COMPAT_DIR = ROOT / "compat"
MAKEFILE = ROOT / "Makefile"
# The kernel paths other x86-64 CPUs take, forced on one machine (ATen's and MKL's dispatch).
FORCED_KERNELS = [
    "ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE",
    "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2",
]
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"

PAGE_WEIGHT_BUDGET = 600 * 1024  # bytes: a chapter page's HTML plus the images it shows
MAX_FIGURE_PIXELS = (900, 700)   # about 6 x 3.5 in at 100 dpi, with room for a wider figure
MAX_FIGURE_BYTES = 150 * 1024


def run(*args):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True)


# --- CI and publishing ----------------------------------------------------------------------


def load_workflow(path):
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(job):
    return job.get("steps", [])


def test_workflows_are_valid_github_actions_workflows():
    assert WORKFLOWS, f"no workflow in {rel(WORKFLOW_DIR)}; CI and publishing live there"
    proc = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
               *map(str, WORKFLOWS))
    assert proc.returncode == 0, (
        "a workflow does not match GitHub's workflow schema (check-jsonschema "
        "--builtin-schema vendor.github-workflows):\n" + proc.stdout + proc.stderr
    )


def test_pull_requests_run_the_readme_test_command():
    runners = []
    for path in WORKFLOWS:
        workflow = load_workflow(path)
        if "pull_request" not in (workflow["on"] or {}):
            continue
        for name, job in workflow["jobs"].items():
            if any(".ci/run" in step.get("run", "") for step in steps(job)):
                runners.append(f"{rel(path)}:{name}")
    assert runners, (
        "no workflow job runs `.ci/run` (make test) on pull_request; add one in "
        f"{rel(WORKFLOW_DIR)}"
    )


def test_pages_are_deployed_from_main_only_after_the_tests_pass():
    deploys = []
    for path in WORKFLOWS:
        workflow = load_workflow(path)
        for name, job in workflow["jobs"].items():
            if not any(step.get("uses", "").startswith("actions/deploy-pages@")
                       for step in steps(job)):
                continue
            deploys.append(name)
            where = f"{rel(path)}, job {name}"
            condition = job.get("if", "")
            assert "refs/heads/main" in condition and "push" in condition, (
                f"{where} deploys without `if: github.event_name == 'push' && github.ref == "
                f"'refs/heads/main'`; pull requests must not publish (it has {condition!r})"
            )
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            tested = [n for n in needs
                      if any(".ci/run" in s.get("run", "") for s in steps(workflow["jobs"][n]))]
            assert tested, f"{where} does not need the job that runs .ci/run; deploy tested HTML"
            permissions = job.get("permissions", {})
            assert permissions.get("pages") == "write" and permissions.get("id-token") == "write", (
                f"{where} needs `permissions: {{pages: write, id-token: write}}` to deploy"
            )
    assert deploys, f"no workflow in {rel(WORKFLOW_DIR)} deploys with actions/deploy-pages"


def make_target(name):
    """The recipe lines of a Makefile target (empty if there is none)."""
    match = re.search(rf"^{re.escape(name)}:.*\n((?:\t.*\n|[ \t]*#.*\n)*)",
                      MAKEFILE.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else ""


def test_make_test_kernels_runs_nbval_under_each_forced_kernel_path():
    recipe = make_target("test-kernels")
    missing = [kernels for kernels in FORCED_KERNELS if kernels not in recipe]
    if not recipe or missing or "notebooks" not in recipe or "pytest" not in recipe:
        pytest.fail(
            f"`make test-kernels` ({rel(MAKEFILE)}) must run nbval over notebooks/ once per "
            f"forced kernel path {FORCED_KERNELS}; its recipe lacks "
            f"{missing or 'pytest ... notebooks'}",
            pytrace=False,
        )


def test_ci_runs_the_forced_kernel_passes_after_make_test():
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    commands = [line.split("#")[0].strip() for line in lines]
    if "make test" not in commands or "make test-kernels" not in commands[
            commands.index("make test") + 1:]:
        pytest.fail(
            f"{rel(CI_RUN)} (what CI and the README run) must run `make test-kernels` after "
            "`make test`: the stored outputs must reproduce with other CPUs' kernels too",
            pytrace=False,
        )


def ci_commands():
    return [line.split("#")[0].strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]


def test_ci_runs_make_test_compat_after_the_other_targets():
    commands = ci_commands()
    after = commands[commands.index("make test-kernels") + 1:] if (
        "make test-kernels" in commands) else []
    if "make test-compat" not in after:
        pytest.fail(
            f"{rel(CI_RUN)} must run `make test-compat` after `make test` and `make "
            "test-kernels`: the notebooks must run, with every claim holding, on the oldest and "
            "newest stacks the book supports (compat/*.txt), not only on the pinned one",
            pytrace=False,
        )


def test_make_test_compat_runs_every_chapter_in_each_compat_environment():
    recipe = make_target("test-compat")
    assert "scripts/test_compat.py" in recipe, (
        f"`make test-compat` ({rel(MAKEFILE)}) must run scripts/test_compat.py; it runs {recipe!r}"
    )
    names = sorted(p.stem for p in COMPAT_DIR.glob("*.txt"))
    assert names == ["floor", "newest"], (
        f"{rel(COMPAT_DIR)} must hold floor.txt and newest.txt (the oldest and newest "
        f"supported stacks), it holds {names}"
    )


def compat_stack(name):
    """{'python': '3.10', 'torch': '2.6.0', ...} of compat/<name>.txt."""
    path = COMPAT_DIR / f"{name}.txt"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = re.match(r"#\s*python\s+(\d+\.\d+)\s*$", first, re.IGNORECASE)
    assert match, f"{rel(path)}: the first line must name its Python (`# python 3.X`)"
    return {"python": match.group(1), **pins(path)}


def minor(version):
    return tuple(int(part) for part in version.split(".")[:2])


# The floor reaches back far enough for a reader on any Kaggle or Colab image of the last two
# years (issue 15): the notebooks must support at least these, and may support older.
OLDEST_TO_SUPPORT = {"python": "3.10", "torch": "2.6", "numpy": "1.26", "matplotlib": "3.8"}


def test_compat_floor_reaches_back_to_the_images_readers_still_use():
    floor = compat_stack("floor")
    too_new = {name: floor.get(name) for name, oldest in OLDEST_TO_SUPPORT.items()
               if floor.get(name) is None or minor(floor[name]) > minor(oldest)}
    assert not too_new, (
        f"compat/floor.txt tests {too_new}; the book promises to run on versions as old as "
        f"{OLDEST_TO_SUPPORT} (Kaggle and Colab images of the last two years)"
    )


def test_compat_newest_is_not_older_than_the_pinned_stack():
    newest, stored = compat_stack("newest"), pins(ROOT / "requirements.txt")
    older = {name: newest[name] for name in ("torch", "numpy", "matplotlib")
             if minor(newest[name]) < minor(stored[name])}
    assert not older, f"compat/newest.txt {older} is older than requirements.txt {stored}"


def supported_range_texts():
    floor, newest = compat_stack("floor"), compat_stack("newest")
    names = {"python": "Python", "torch": "torch", "numpy": "NumPy", "matplotlib": "Matplotlib"}
    return [f"{label} {'.'.join(floor[key].split('.')[:2])}–{'.'.join(newest[key].split('.')[:2])}"
            for key, label in names.items()]


@pytest.mark.parametrize("path", [ROOT / "README.md", ROOT / "book" / "intro.md"],
                         ids=["README", "preface"])
def test_supported_range_is_stated_as_tested(path):
    text = path.read_text(encoding="utf-8")
    missing = [wanted for wanted in supported_range_texts() if wanted not in text]
    assert not missing, (
        f"{rel(path)} must state the supported range that `make test-compat` tests "
        f"(compat/floor.txt to compat/newest.txt): {', '.join(supported_range_texts())}; it "
        f"lacks {missing}"
    )


def test_newest_releases_are_tested_unpinned_every_week():
    weekly = []
    for path in WORKFLOWS:
        workflow = load_workflow(path)
        crons = [entry.get("cron") for entry in (workflow["on"] or {}).get("schedule") or []]
        for name, job in workflow["jobs"].items():
            if crons and any("test_compat.py --unpinned" in step.get("run", "")
                             for step in steps(job)):
                weekly.append((rel(path), name, crons))
    assert weekly and all(re.fullmatch(r"\S+ \S+ \* \* \d", cron)
                          for _, _, crons in weekly for cron in crons), (
        f"no workflow in {rel(WORKFLOW_DIR)} runs `scripts/test_compat.py --unpinned` on a "
        f"weekly schedule (cron `M H * * D`): {weekly}"
    )


# --- Binder and Colab ------------------------------------------------------------------------


def pins(path):
    """{package: version} from the `name==version` lines of a requirements file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s#;]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def notebook_imports():
    """Top-level modules the chapter notebooks import, outside the standard library."""
    imported = set()
    for path in CHAPTER_NOTEBOOKS:
        for node in (node for _, tree in parsed_code_cells(read_notebook(path))
                     for node in ast.walk(tree)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names)


@pytest.mark.parametrize("path", REQUIREMENTS, ids=lambda p: rel(p))
def test_every_requirement_is_pinned_with_double_equals(path):
    """Each package line is `name==version`: the stored outputs come from exactly that stack.

    Comments, blank lines and pip options (`--extra-index-url ...`) are not packages.
    """
    loose = [
        f"{rel(path)}:{number}: {line.strip()!r}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.split("#")[0].strip() and not line.strip().startswith("-")
        and not re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[\w,\-]+\])?==[^\s=;<>~!*]+",
                             line.split("#")[0].strip())
    ]
    if loose:
        pytest.fail(
            "requirements not pinned with `==` (an unpinned package installs whatever is newest, "
            "and the stored outputs no longer match):\n  " + "\n  ".join(loose)
            + "\nPin each as `name==version` (the version `.venv/bin/pip freeze` shows), then "
            "`make notebooks` if the version changed",
            pytrace=False,
        )


def test_binder_environment_has_the_pinned_cpu_torch():
    binder_requirements = BINDER_DIR / "requirements.txt"
    assert binder_requirements.exists(), (
        f"no {rel(binder_requirements)}: Binder would install all of requirements.txt "
        "(the build and test tools) and a CUDA torch"
    )
    text = binder_requirements.read_text(encoding="utf-8")
    torch = pins(ROOT / "requirements.txt")["torch"]
    assert pins(binder_requirements).get("torch") == f"{torch}+cpu", (
        f"{rel(binder_requirements)} must pin torch=={torch}+cpu (the pinned version, CPU build)"
    )
    assert "https://download.pytorch.org/whl/cpu" in text, (
        f"{rel(binder_requirements)} needs `--extra-index-url https://download.pytorch.org/whl/cpu`"
        " to find the +cpu build"
    )


def test_binder_environment_provides_what_the_notebooks_import_at_the_pinned_versions():
    binder = pins(BINDER_DIR / "requirements.txt")
    project = pins(ROOT / "requirements.txt")
    missing = sorted(m for m in notebook_imports() if m.lower() not in binder)
    assert not missing, f"the notebooks import {missing}, which binder/requirements.txt lacks"
    for package, version in binder.items():
        assert version.removesuffix("+cpu") == project.get(package), (
            f"binder/requirements.txt pins {package}=={version}, requirements.txt "
            f"{project.get(package)}; keep them equal (the stored outputs come from those)"
        )


def test_binder_python_is_the_python_of_the_stored_outputs():
    runtime = BINDER_DIR / "runtime.txt"
    assert runtime.exists(), f"no {rel(runtime)} (python-3.X) for Binder"
    wanted = runtime.read_text(encoding="utf-8").strip().removeprefix("python-")
    for path in CHAPTER_NOTEBOOKS:
        version = read_notebook(path).metadata.get("language_info", {}).get("version", "")
        assert version == wanted or version.startswith(wanted + "."), (
            f"{rel(path)} was run with Python {version}, {rel(runtime)} asks for {wanted}"
        )


# --- lint and hooks --------------------------------------------------------------------------


def test_code_passes_ruff():
    proc = run(
        str(BIN / "ruff"), "check", "--output-format", "concise",
        "tests", "notebooks", "scripts", "conftest.py",
    )
    if proc.returncode:
        pytest.fail(
            "ruff (rules in pyproject.toml) reports, as file:[cell:]line:column: rule:\n"
            + proc.stdout + proc.stderr
            + "Fix tests/ directly (`ruff check --fix` sorts imports); for a chapter, edit its "
            "Markdown twin in book/ and run `make notebooks`.",
            pytrace=False,
        )


def test_pre_commit_config_is_valid():
    proc = run(str(BIN / "pre-commit"), "validate-config", str(PRE_COMMIT_CONFIG))
    assert proc.returncode == 0, f"{rel(PRE_COMMIT_CONFIG)} is invalid:\n{proc.stdout}{proc.stderr}"


def pre_commit_hooks():
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text(encoding="utf-8"))
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_pre_commit_syncs_jupytext_pairs_of_every_chapter():
    syncing = [h for h in pre_commit_hooks()
               if "jupytext" in h.get("entry", h["id"]) and "--sync" in h.get("entry", "")]
    assert syncing, f"{rel(PRE_COMMIT_CONFIG)} has no `jupytext --sync` hook"
    pattern = re.compile(syncing[0].get("files", ""))
    for path in CHAPTER_NOTEBOOKS:
        for source in (rel(path), f"book/{path.stem}.md"):
            assert pattern.search(source), (
                f"the jupytext hook's `files` pattern misses {source}; it must cover each pair"
            )


def test_pre_commit_runs_ruff_and_the_pinned_tools_of_the_project_venv():
    hooks = {h["id"]: h for h in pre_commit_hooks()}
    assert "ruff" in hooks, f"{rel(PRE_COMMIT_CONFIG)} has no ruff hook"
    for hook in hooks.values():
        tool = Path(hook["entry"].split()[0])
        assert tool.parent == Path(".venv/bin") and (BIN / tool.name).exists(), (
            f"hook {hook['id']} runs {tool}; run a tool pinned in requirements.txt from .venv/bin "
            "(the Makefile's virtual environment), so hooks work offline and agree with CI"
        )


# --- figures and page weight ----------------------------------------------------------------


class PageImages(HTMLParser):
    """The images of an HTML page, with whether each sits in a <figure> with a caption."""

    def __init__(self):
        super().__init__()
        self.images = []  # [src, alt, in_figure]
        self.figure_images = None
        self.in_caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figure_images = []
        elif tag == "figcaption":
            self.in_caption = True
        elif tag == "img":
            self.images.append([attrs.get("src", ""), attrs.get("alt") or "", False])
            if self.figure_images is not None:
                self.figure_images.append(self.images[-1])

    def handle_data(self, data):
        if self.in_caption and data.strip() and self.figure_images:
            for image in self.figure_images:
                image[2] = True

    def handle_endtag(self, tag):
        if tag == "figure":
            self.figure_images = None
        elif tag == "figcaption":
            self.in_caption = False


def page_images(page):
    parser = PageImages()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.images


def local_image(page, src):
    if re.match(r"^[a-z]+:", src):
        return None
    return (page.parent / src.split("#")[0].split("?")[0]).resolve()


def built_pages():
    return sorted(p for p in HTML_DIR.rglob("*.html") if "_static" not in p.parts)


def png_size(path):
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", header[16:24])


def chapter_pages():
    return [HTML_DIR / "notebooks" / f"{p.stem}.html" for p in CHAPTER_NOTEBOOKS]


def test_chapter_figures_are_pngs_of_modest_size(built_book):
    for page in chapter_pages():
        assert page.exists(), f"{rel(page)} was not built; is the chapter in _toc.yml?"
        for src, _, _ in page_images(page):
            image = local_image(page, src)
            if image is None or "_images" not in image.parts:
                continue  # theme icons (launch-button logos)
            size = png_size(image)
            assert size, f"{rel(page)}: figure {src} is not a PNG; store figures as PNG"
            (width, height), max_size = size, MAX_FIGURE_PIXELS
            assert width <= max_size[0] and height <= max_size[1], (
                f"{rel(page)}: figure {src} is {width}x{height} px, over {max_size[0]}x"
                f"{max_size[1]}; draw it at about 6x3.5 in and 100 dpi"
            )
            assert image.stat().st_size <= MAX_FIGURE_BYTES, (
                f"{rel(page)}: figure {src} is {image.stat().st_size // 1024} KB, over "
                f"{MAX_FIGURE_BYTES // 1024} KB"
            )


def page_weight(page):
    """(HTML bytes, image bytes) of a page; each distinct local image counted once."""
    images = {local_image(page, src) for src, _, _ in page_images(page)} - {None}
    return page.stat().st_size, sum(i.stat().st_size for i in images if i.exists())


def test_heaviest_chapter_page_is_within_the_page_weight_budget(built_book):
    pages = [p for p in chapter_pages() if p.exists()]
    assert pages, "no chapter page was built"
    weights = {rel(p): page_weight(p) for p in pages}
    width = max(map(len, weights))
    report = "\n".join(
        f"{name:{width}} {html // 1024:4d} KB HTML + {images // 1024:4d} KB images = "
        f"{(html + images) // 1024:5d} KB"
        for name, (html, images) in sorted(weights.items())
    )
    (BUILD_DIR / "page-weight.txt").write_text(report + "\n", encoding="utf-8")
    print("\n" + report)
    heaviest, (html, images) = max(weights.items(), key=lambda item: sum(item[1]))
    assert html + images <= PAGE_WEIGHT_BUDGET, (
        f"the heaviest chapter page, {heaviest}, weighs {(html + images) // 1024} KB "
        f"({html // 1024} KB HTML + {images // 1024} KB images), over the "
        f"{PAGE_WEIGHT_BUDGET // 1024} KB budget: shrink its figures (PNG, about 6x3.5 in at "
        "100 dpi), plot fewer of them, or print shorter outputs"
    )


def test_no_page_declares_thebe_js_url_twice(built_book):
    # A duplicated `const THEBE_JS_URL` inline script is a script error in every browser;
    # test_site.py catches it in Chromium, this check names its cause without a browser.
    for path in built_pages():
        count = path.read_text(encoding="utf-8").count("const THEBE_JS_URL")
        assert count <= 1, (
            f"{rel(path)} declares THEBE_JS_URL {count} times; keep sphinx_thebe out of "
            "_config.yml's sphinx.config.extensions"
        )
