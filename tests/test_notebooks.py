"""Promises about the stored chapter notebooks.

nbval (run over notebooks/ by the same pytest command) checks that every stored text output
is reproduced. It cannot notice a notebook that has no outputs at all, one assembled from
several partial runs, a figure drawn by code that has since changed, or digits that only this
CPU reproduces, so these tests check what nbval does not.

Every message names the cell as nbval does (`notebooks/05_nn.ipynb::Cell 7`: the index among
the notebook's code cells, counted from 0) and the command that fixes it. A chapter is fixed in
its Markdown twin (book/NN_slug.md), then `make notebooks` (or
`python scripts/refresh_notebooks.py NN`) syncs the pair and re-executes it.
"""

import ast
import io
import re
import statistics
import sys
import tokenize

import nbformat
import pytest

from conftest import (
    CHAPTER_NOTEBOOKS,
    NOTEBOOK_DIR,
    ROOT,
    cell_ref,
    chapter_params,
    code_cells,
    fix_hint,
    numbered_code_cells,
    parse_cell,
    parsed_code_cells,
    read_notebook,
    refresh_hint,
    refresh_notebooks,
    rel,
    twin_of,
)

ALLOWED_THIRD_PARTY = {"torch", "numpy", "matplotlib"}
# Standard-library modules that read or write files, talk to the network or run programs.
# `os` is among them, except for the few names a chapter needs to describe and pin its threads
# (chapter 10: which CPUs it may use, NumPy's BLAS threads set before NumPy is imported).
OS_ALLOWED = {"environ", "sched_getaffinity", "process_cpu_count", "cpu_count"}
FORBIDDEN_MODULES = {
    "os", "pathlib", "shutil", "subprocess", "socket", "urllib", "http", "ftplib",
    "requests", "pickle", "shelve", "tempfile", "glob", "io", "sqlite3", "zipfile",
    "tarfile", "webbrowser", "smtplib", "ssl", "asyncio",
}
# Calls that read or write files (whatever object they are called on).
FORBIDDEN_CALLS = {
    "open", "save", "load", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "savefig", "imsave", "imread", "urlopen", "download", "memmap",
    "urlretrieve", "load_state_dict_from_url", "download_url_to_file", "hf_hub_download",
}
PLOT_TEXT_METHODS = {
    "set_xlabel", "set_ylabel", "set_title", "suptitle", "xlabel", "ylabel", "title",
    "text", "annotate", "legend", "set",
}
PLOT_TEXT_KEYWORDS = {"label", "title", "xlabel", "ylabel"}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
SHOWN = 12  # findings listed in one failure message (the count says how many in all)

STAGE_CHAPTERS = [p for p in CHAPTER_NOTEBOOKS if 1 <= int(p.stem[:2]) <= 8]
STAGE_IDS = [p.stem for p in STAGE_CHAPTERS]
# The mould (CONTRIBUTING.md): 学习目标 (an admonition) after the title, then the chapter's own
# sections, then these level-2 headings, with these exact texts, in this order.
CLOSING_SECTIONS = ["本章改了什么", "常见错误", "小结", "练习"]
EXAMPLES = {"例 P": "sin(x) cubic fit", "例 N": "two-layer ReLU network"}

MAX_CHAPTER_MEDIAN = 6  # lines of code per code cell, median over a chapter
MAX_BOOK_MEDIAN = 5     # median over every code cell of the book

SOLUTION_METADATA = """```{code-cell} ipython3
---
jupyter:
  outputs_hidden: true
  source_hidden: true
tags: [hide-cell]
---"""


def stage_params():
    return pytest.mark.parametrize("notebook_path", STAGE_CHAPTERS, ids=STAGE_IDS)


def fail(problems, what):
    """One failure listing every problem found (the first SHOWN of them)."""
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        pytest.fail(f"{what} ({len(problems)} found):\n{shown}{more}", pytrace=False)


def expect(condition, message):
    """Fail with the message alone (no code excerpt, no dump of the compared values)."""
    if not condition:
        pytest.fail(message, pytrace=False)


def tags(cell):
    return cell.metadata.get("tags", [])


def is_raising_cell(cell):
    return "raises-exception" in tags(cell)


def text_outputs(cell):
    """The text a code cell stores (streams and the text/plain of results); not errors."""
    for output in cell.outputs:
        if output.output_type == "stream":
            yield output.text
        elif output.output_type in ("execute_result", "display_data"):
            yield output.get("data", {}).get("text/plain", "")


def call_name(node):
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def markdown_lines(cell):
    """(line, inside_a_code_block) for each line of a markdown cell."""
    fence = None
    for line in cell.source.splitlines():
        match = re.match(r"\s*(`{3,}|~{3,})", line)
        if match and (fence is None or match.group(1).startswith(fence)):
            fence = match.group(1) if fence is None else None
            yield line, True
            continue
        yield line, fence is not None


def headings(nb):
    """(cell index, level, text) of every Markdown heading, in order (code blocks skipped)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for line, in_code in markdown_lines(cell):
            match = re.match(r"(#{1,6})\s+(.+?)\s*#*\s*$", line)
            if match and not in_code:
                found.append((index, len(match.group(1)), match.group(2)))
    return found


def has_learning_goals(nb):
    """A `学习目标` admonition (or heading) in the chapter."""
    goals = re.compile(
        r"^\s*(`{3,}|:{3,})\{admonition\}\s*学习目标\s*$|^#{1,6}\s+学习目标\s*$", re.M
    )
    return any(goals.search(c.source) for c in nb.cells if c.cell_type == "markdown")


# --- outputs come from one fresh run -------------------------------------------------------


def test_there_are_chapter_notebooks():
    expect(CHAPTER_NOTEBOOKS, f"no notebooks/NN_slug.ipynb found in {NOTEBOOK_DIR}")


@chapter_params()
def test_every_code_cell_was_executed(notebook_path):
    nb = read_notebook(notebook_path)
    fail(
        [f"{cell_ref(notebook_path, n)} has no stored outputs (never executed)"
         for n, c in numbered_code_cells(nb) if c.execution_count is None],
        f"{rel(notebook_path)}: code cells were not executed; {refresh_hint(notebook_path)}",
    )


@chapter_params()
def test_outputs_come_from_one_fresh_top_to_bottom_run(notebook_path):
    nb = read_notebook(notebook_path)
    counts = [c.execution_count for c in code_cells(nb)]
    expect(counts == list(range(1, len(counts) + 1)), (
        f"{rel(notebook_path)}: execution counts are {counts}, not 1..{len(counts)} in order, "
        f"so the outputs do not come from one fresh run; {refresh_hint(notebook_path)}"
    ))


@chapter_params()
def test_no_output_is_an_error_or_stderr(notebook_path):
    nb = read_notebook(notebook_path)
    problems = []
    for n, cell in numbered_code_cells(nb):
        for output in cell.outputs:
            if output.output_type == "error" and not is_raising_cell(cell):
                problems.append(
                    f"{cell_ref(notebook_path, n)}: stored error {output.ename}: "
                    f"{output.evalue[:200]} (fix the cell, or tag it raises-exception if the "
                    "error is the lesson)"
                )
            if output.output_type == "stream" and output.name == "stderr":
                problems.append(
                    f"{cell_ref(notebook_path, n)}: stderr output (a warning?) "
                    f"{output.text[:200]!r} (fix its cause)"
                )
    fail(problems, f"{rel(notebook_path)} stores errors or stderr; {fix_hint(notebook_path)}")


@chapter_params()
def test_cells_tagged_raises_exception_do_raise(notebook_path):
    nb = read_notebook(notebook_path)
    fail(
        [f"{cell_ref(notebook_path, n)} is tagged raises-exception but stores no error"
         for n, c in numbered_code_cells(nb)
         if is_raising_cell(c) and not any(o.output_type == "error" for o in c.outputs)],
        f"{rel(notebook_path)}: remove the tag or fix the cell; {fix_hint(notebook_path)}",
    )


# --- figures ----------------------------------------------------------------------------


@chapter_params()
def test_notebook_stores_a_png_figure(notebook_path):
    nb = read_notebook(notebook_path)
    pngs = [
        o for c in code_cells(nb) for o in c.outputs
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    expect(pngs, f"{rel(notebook_path)}: no PNG figure stored (every chapter plots its loss)")


@chapter_params()
def test_no_figure_is_stored_as_svg(notebook_path):
    # nbval compares SVG as text, which changes every run.
    nb = read_notebook(notebook_path)
    fail(
        [f"{cell_ref(notebook_path, n)} stores an SVG figure"
         for n, c in numbered_code_cells(nb)
         if any("image/svg+xml" in o.get("data", {}) for o in c.outputs)],
        f"{rel(notebook_path)}: store figures as PNG (drop `set_matplotlib_formats('svg')` or "
        f"`%config InlineBackend.figure_formats`); {fix_hint(notebook_path)}",
    )


@chapter_params()
def test_every_figure_was_drawn_by_the_code_now_in_the_notebook(notebook_path):
    """A figure stores the fingerprint of the code that drew it; it must match today's code.

    nbval compares only a figure's text (`<Figure size 600x350 with 1 Axes>`), so a plot cell
    edited in the twin and synced, but not re-executed, would pass it. When
    scripts/refresh_notebooks.py executes a notebook it records in each image output's
    metadata `code_sha256`, the sha256 of the sources of code cells 0..n (the figure's cell
    and every code cell before it: they made the data it plots). Here that fingerprint is
    recomputed from the notebook's code; it depends on the source text only, so it holds on
    every CPU, kernel path and device.
    """
    nb = read_notebook(notebook_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    fingerprints = refresh_notebooks.code_fingerprints(nb)
    key = refresh_notebooks.FINGERPRINT_KEY
    problems = []
    for n, (cell, fingerprint) in enumerate(zip(code, fingerprints)):
        for output in refresh_notebooks.image_outputs(cell):
            stored = output.get("metadata", {}).get(key)
            if stored is None:
                problems.append(
                    f"{cell_ref(notebook_path, n)}: its figure carries no `{key}` (it was not "
                    "stored by `make notebooks`; run in Jupyter?)"
                )
            elif stored != fingerprint:
                problems.append(
                    f"{cell_ref(notebook_path, n)}: its figure was drawn by other code (this "
                    "cell or a code cell before it changed since it was executed)"
                )
    fail(problems, f"{rel(notebook_path)} stores stale figures; {refresh_hint(notebook_path)}")


@chapter_params()
def test_plot_text_has_no_chinese(notebook_path):
    # Matplotlib has no CJK font on Colab: Chinese labels render as boxes and warn on stderr.
    problems = []
    for n, tree in parsed_code_cells(read_notebook(notebook_path)):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            texts = [kw.value for kw in node.keywords if kw.arg in PLOT_TEXT_KEYWORDS]
            if call_name(node) in PLOT_TEXT_METHODS:
                texts += list(node.args) + [kw.value for kw in node.keywords]
            for text_node in texts:
                for const in ast.walk(text_node):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        if CJK.search(const.value):
                            problems.append(
                                f"{cell_ref(notebook_path, n)}, line {const.lineno}: plot "
                                f"text {const.value!r}"
                            )
    fail(problems, f"{rel(notebook_path)}: use English or math in figures (Chinese needs a "
                   f"font Colab lacks); {fix_hint(notebook_path)}")


# --- what the outputs print ---------------------------------------------------------------

# A number as printed: optional sign, digits with a decimal point and/or an exponent. The
# lookarounds keep out parts of words and of dotted names (`2.13.0`, `x1`, `600x350`); a
# full stop after a number (`loss 9.0860.`) does not.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w|\.\w)")
LOSS_LINE = re.compile(r"\bloss(?:es)?\b", re.IGNORECASE)
FLOAT64_CELL = re.compile(r"float64|double")
MAX_DIGITS = 6          # any stored float
MAX_FLOAT32_LOG_DIGITS = 4


def significant_digits(token):
    """Significant digits a float prints, or None for an integer (no point, no exponent).

    The digits of the mantissa without leading zeros, trailing zeros included (they were
    printed): `215799.8750` -> 10, `3.287e-05` -> 4, `0.007545` -> 4, `-2.1788` -> 5,
    `2000.0` -> 5, `0.0000` -> 1, `1e-4` -> 1; `2000` and the `3` of `torch.Size([3])` -> None.
    """
    mantissa = re.split(r"[eE]", token.lstrip("+-"))[0]
    if "." not in mantissa and mantissa == token.lstrip("+-"):
        return None
    return max(len(mantissa.replace(".", "").lstrip("0")), 1)


def printed_floats(line):
    """(token, significant digits) for each float printed on a line of output."""
    found = []
    for match in NUMBER.finditer(line):
        digits = significant_digits(match.group(0))
        if digits is not None:
            found.append((match.group(0), digits))
    return found


def imports_torch(nb):
    return any(re.search(r"^\s*(import|from)\s+torch\b", c.source, re.M) for c in code_cells(nb))


def output_lines(nb):
    """(n, cell, line) for each line of text a code cell stores."""
    for n, cell in numbered_code_cells(nb):
        for text in text_outputs(cell):
            for line in text.splitlines():
                yield n, cell, line


@chapter_params()
def test_no_float_prints_more_than_6_significant_digits(notebook_path):
    """No stored float prints more than 6 significant digits.

    Significant digits are counted (`significant_digits`), not decimals: `215799.8750` has
    10, of which a float32 (about 7 digits) holds 7 and another CPU's kernels reproduce fewer;
    a tensor repr (`tensor(215799.8750)`) and scientific notation (`1.2345678e+05`) count the
    same way. Integers and shapes are not floats and are not counted.
    """
    nb = read_notebook(notebook_path)
    problems = [
        f"{cell_ref(notebook_path, n)}: `{token}` ({digits} significant digits) in "
        f"{line.strip()[:90]!r}"
        for n, _, line in output_lines(nb)
        for token, digits in printed_floats(line) if digits > MAX_DIGITS
    ]
    fail(problems, (
        f"{rel(notebook_path)} prints floats with more than {MAX_DIGITS} significant digits, "
        "which other CPUs do not reproduce: print float32 with `:.4g` (or `:.3e`), float64 "
        "with at most `:.6g`, tensors after `torch.set_printoptions(precision=3)` or through "
        f"a format; {fix_hint(notebook_path)}"
    ))


@chapter_params()
def test_float32_loss_logs_print_at_most_4_significant_digits(notebook_path):
    """A float32 training log prints at most 4 significant digits per number.

    A training log line is a line of stored text output that contains the word `loss`
    (`iteration  100   loss 3238.3005`, `initial loss = 215799.8750`, `final loss ...`).
    It is float32 unless its cell computes in float64: the cell's code names `float64` or
    `double`, or the notebook imports no torch (NumPy computes in float64, chapter 01). A
    line that itself names `float32` is float32 whatever its cell. Every float on a float32
    log line has at most 4 significant digits (`{loss:.4g}`): after hundreds of float32 steps
    the 5th digit differs between CPUs.
    """
    nb = read_notebook(notebook_path)
    numpy_only = not imports_torch(nb)
    problems = []
    for n, cell, line in output_lines(nb):
        if not LOSS_LINE.search(line):
            continue
        float64 = numpy_only or FLOAT64_CELL.search(cell.source)
        if float64 and "float32" not in line:
            continue
        problems += [
            f"{cell_ref(notebook_path, n)}: `{token}` ({digits} significant digits) in "
            f"{line.strip()[:90]!r}"
            for token, digits in printed_floats(line) if digits > MAX_FLOAT32_LOG_DIGITS
        ]
    fail(problems, (
        f"{rel(notebook_path)} logs float32 losses with more than {MAX_FLOAT32_LOG_DIGITS} "
        "significant digits: format them with `:.4g` (f\"{loss:.4g}\"), or `:.3e`; print a "
        "converged tail as a bound (`loss < 1e-4`) and an oscillating phase as a range; "
        f"{fix_hint(notebook_path)}"
    ))


# --- claims are assertions -----------------------------------------------------------------

# A printed boolean: `True`/`False` as a word, but not a keyword in a repr (`bias=True`,
# `requires_grad=True`), which shows a setting, not a claim.
PRINTED_BOOLEAN = re.compile(r"(?<![\w=])(True|False)(?!\w)")
INTENDED = re.compile(r"#\s*intended\s*:", re.IGNORECASE)


def asserts_something(tree):
    """Whether a cell checks a claim: an `assert` statement or an `assert_*` call
    (`torch.testing.assert_close`, `np.testing.assert_allclose`, ...)."""
    return any(isinstance(node, ast.Assert)
               or (isinstance(node, ast.Call) and call_name(node).startswith("assert"))
               for node in ast.walk(tree))


def marks_intended(source):
    """Whether a comment in the cell says its booleans are not claims (`# intended: ...`)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    return any(t.type == tokenize.COMMENT and INTENDED.match(t.string) for t in tokens)


def unchecked_boolean_claims(nb, path):
    """A message for each code cell that prints True/False without asserting it.

    nbval compares a stored `False` with a re-run `False` and passes, so a printed boolean checks
    nothing: chapter 10 once stored `same loss on the chosen device ...: False` right under prose
    saying the opposite, through every test. A cell whose stored text shows a boolean must
    assert the claim (then nbval, `make test-compat` and a GPU run all fail when it stops
    holding), or say with a `# intended: <why>` comment that the boolean is not a claim (an
    environment report, a mask being shown).
    """
    found = []
    for n, cell in numbered_code_cells(nb):
        lines = [line.strip() for text in text_outputs(cell) for line in text.splitlines()
                 if PRINTED_BOOLEAN.search(line)]
        if not lines:
            continue
        try:
            tree = parse_cell(cell.source)
        except SyntaxError:
            continue  # reported by test_every_code_cell_is_valid_python
        if asserts_something(tree) or marks_intended(cell.source):
            continue
        found.append(f"{cell_ref(path, n)} prints {lines[0][:90]!r}"
                     + (f" (and {len(lines) - 1} more such lines)" if len(lines) > 1 else "")
                     + " but asserts nothing")
    return found


@chapter_params()
def test_every_printed_boolean_is_asserted_or_marked_intended(notebook_path):
    fail(unchecked_boolean_claims(read_notebook(notebook_path), notebook_path), (
        f"{rel(notebook_path)} prints claims as booleans that nothing checks. Assert each claim "
        "in its cell with a message that prints the value (`assert d < 1e-6, f\"difference "
        "{d:.1e}\"`), then print the number if it is stable or the statement the assertion "
        "proved; a boolean that is not a claim gets a `# intended: <why>` comment "
        f"(CONTRIBUTING.md, \"Claims are assertions\"); {fix_hint(notebook_path)}"
    ))


# Chapter 10's self-check as it was stored before issue 15: on the CPU `.to(device)` returned
# the same tensors, the first step updated them in place, and the page printed False under prose
# saying True. Kept here, verbatim, as the bad input the claims test must catch.
PLANTED_SELF_CHECK = {
    "source": (
        "cpu_loss = torch_step(x_t, y_t, w1_t, w2_t)\n"
        "dev_loss = torch_step(x_t.to(device), y_t.to(device), w1_t.to(device), "
        "w2_t.to(device))\n"
        "relative = abs(cpu_loss - dev_loss) / cpu_loss\n"
        "print(\"same loss on the chosen device, relative difference < 1e-4:\", relative < 1e-4)"
    ),
    "output": "same loss on the chosen device, relative difference < 1e-4: False\n",
}


def test_claims_test_catches_the_old_chapter_10_self_check():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch"),
                nbformat.v4.new_code_cell(PLANTED_SELF_CHECK["source"])]
    nb.cells[1].outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text=PLANTED_SELF_CHECK["output"])]
    path = NOTEBOOK_DIR / "10_planted_copy.ipynb"
    found = unchecked_boolean_claims(nb, path)
    expect(len(found) == 1 and "10_planted_copy.ipynb::Cell 1" in found[0], (
        f"the claims check did not flag the old chapter 10 self-check: {found}"
    ))
    nb.cells[1].source += "\nassert relative < 1e-4, f\"relative difference {relative:.1e}\""
    expect(not unchecked_boolean_claims(nb, path), "an asserted claim was still flagged")
    nb.cells[1].source = PLANTED_SELF_CHECK["source"] + "  # intended: not a claim"
    expect(not unchecked_boolean_claims(nb, path), "a cell marked intended was still flagged")


# --- the environment each chapter ran with ----------------------------------------------------

ENVIRONMENT_LINE = re.compile(
    r"^Python (?P<python>\d+\.\d+), (?:torch (?P<torch>\S+), )?NumPy (?P<numpy>\S+), "
    r"Matplotlib (?P<matplotlib>\S+)(?:, device (?P<device>\S+))?$"
)
SETUP_CELLS = 6  # the environment line is printed by one of the chapter's first code cells


def pinned_versions():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@chapter_params()
def test_chapter_prints_the_versions_it_ran_with(notebook_path):
    """Near its top each chapter prints one line naming the versions it ran with.

    A reader who sees other numbers can tell why; and the line proves the stored outputs come
    from the pinned stack (requirements.txt) and the Python of the outputs, so a pin changed
    without `make notebooks` fails here.
    """
    nb = read_notebook(notebook_path)
    setup = numbered_code_cells(nb)[:SETUP_CELLS]
    lines = [(n, m) for n, cell in setup for text in text_outputs(cell)
             for m in map(ENVIRONMENT_LINE.match, text.splitlines()) if m]
    expect(lines, (
        f"{rel(notebook_path)}: none of its first {SETUP_CELLS} code cells prints the "
        "environment line `Python 3.11, torch 2.13.0+cpu, NumPy 2.4.6, Matplotlib 3.11.2, "
        "device cpu` (chapter 01: without torch and device); print it in the setup cell as "
        f"CONTRIBUTING.md shows; {fix_hint(notebook_path)}"
    ))
    n, line = lines[0]
    pins = pinned_versions()
    python = ".".join(nb.metadata.get("language_info", {}).get("version", "").split(".")[:2])
    wanted = {"python": python, "numpy": pins["numpy"], "matplotlib": pins["matplotlib"]}
    if imports_torch(nb):
        wanted["torch"] = pins["torch"]
        expect(line["device"], f"{cell_ref(notebook_path, n)}: the line names no device")
    got = {key: (line[key] or "").split("+")[0] for key in wanted}
    expect(got == wanted, (
        f"{cell_ref(notebook_path, n)} says it ran with {got}, but requirements.txt pins "
        f"{wanted}: the stored outputs are not from the pinned stack; {refresh_hint(notebook_path)}"
    ))


@chapter_params()
def test_notebook_prints_a_shape_table(notebook_path):
    nb = read_notebook(notebook_path)
    header = re.compile(r"^name\s+shape\s+meaning", re.MULTILINE)
    expect(any(header.search(text) for c in code_cells(nb) for text in text_outputs(c)), (
        f"{rel(notebook_path)}: no traced-shape table (a 'name shape meaning' printout)"
    ))


@chapter_params()
def test_no_stored_output_holds_a_memory_address_or_a_bare_plot_repr(notebook_path):
    nb = read_notebook(notebook_path)
    fail(
        [f"{cell_ref(notebook_path, n)}: {line.strip()[:100]!r}"
         for n, _, line in output_lines(nb)
         if re.search(r" at 0x[0-9a-f]+|<matplotlib\.", line)],
        f"{rel(notebook_path)} stores memory addresses or plot reprs, which change every run "
        f"(end plot cells with `plt.show()`); {fix_hint(notebook_path)}",
    )


# --- the code -------------------------------------------------------------------------------


@chapter_params()
def test_every_code_cell_is_valid_python(notebook_path):
    nb = read_notebook(notebook_path)
    problems = []
    for n, cell in numbered_code_cells(nb):
        try:
            parse_cell(cell.source)
        except SyntaxError as error:
            problems.append(f"{cell_ref(notebook_path, n)}, line {error.lineno}: {error.msg}")
    fail(problems, f"{rel(notebook_path)}: code cells do not parse; {fix_hint(notebook_path)}")


@chapter_params()
def test_notebook_has_no_shell_commands_or_magics(notebook_path):
    problems = []
    nb = read_notebook(notebook_path)
    for n, tree in parsed_code_cells(nb):
        lines = dict(numbered_code_cells(nb))[n].source.splitlines()
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Call)
                    and getattr(node.func.value.func, "id", "") == "get_ipython"):
                line = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
                problems.append(f"{cell_ref(notebook_path, n)}, line {node.lineno}: `{line}`")
    fail(problems, (
        f"{rel(notebook_path)} runs shell commands or IPython magics (`!pip`, `%time`); the "
        "notebook must run as plain Python on Colab, with only what Colab has; "
        f"{fix_hint(notebook_path)}"
    ))


@chapter_params()
def test_notebook_imports_only_torch_numpy_matplotlib_and_stdlib(notebook_path):
    allowed = ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names)
    problems = []
    for n, tree in parsed_code_cells(read_notebook(notebook_path)):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            problems += [
                f"{cell_ref(notebook_path, n)}, line {node.lineno}: imports {name}"
                for name in names if name.split(".")[0] not in allowed
            ]
    fail(problems, (
        f"{rel(notebook_path)}: chapters may import only torch, numpy, matplotlib and the "
        f"standard library (what Colab has); {fix_hint(notebook_path)}"
    ))


def forbidden_imports(node):
    """(what, why) for each name an import statement brings in from a file/network module.

    `import os` itself is allowed (`os.environ`, `os.sched_getaffinity`, ...: OS_ALLOWED); what
    the code then uses of `os` is checked by `forbidden_os_uses`. `from os import path` is not.
    """
    if isinstance(node, ast.Import):
        return [(alias.name, "imports") for alias in node.names
                if alias.name.split(".")[0] in FORBIDDEN_MODULES and alias.name != "os"]
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
        if node.module == "os":
            return [(f"os.{a.name}", "imports") for a in node.names if a.name not in OS_ALLOWED]
        return [(node.module, "imports")]
    return []


def forbidden_os_uses(tree):
    """(line, name) for each `os.<name>` the code uses that is not in OS_ALLOWED."""
    return [(node.lineno, f"os.{node.attr}") for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "os" and node.attr not in OS_ALLOWED]


@chapter_params()
def test_notebook_does_no_file_or_network_io(notebook_path):
    problems = []
    for n, tree in parsed_code_cells(read_notebook(notebook_path)):
        where = cell_ref(notebook_path, n)
        problems += [f"{where}, line {line}: uses {name}, which can reach files or programs"
                     for line, name in forbidden_os_uses(tree)]
        for node in ast.walk(tree):
            problems += [
                f"{where}, line {node.lineno}: {verb} {name}, which does file/network I/O"
                for name, verb in forbidden_imports(node)
            ]
            if isinstance(node, ast.Call) and call_name(node) in FORBIDDEN_CALLS:
                problems.append(
                    f"{where}, line {node.lineno}: calls {call_name(node)}(), which reads or "
                    "writes files or the network"
                )
    fail(problems, (
        f"{rel(notebook_path)}: chapters must be self-contained (no files, no network); "
        f"{fix_hint(notebook_path)}"
    ))


DEVICE_NAME = re.compile(r"(cuda|mps)(:\d+)?")


def is_device_literal(node):
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and DEVICE_NAME.fullmatch(node.value) is not None)


def hard_coded_devices(tree):
    """(line, what) for each device the code names without asking whether it exists.

    Flagged: `torch.device("cuda")` / `"mps"` / `"cuda:0"`, `.cuda()`, `.to("cuda")`, and a
    `device="cuda"` keyword in any call. Allowed inside an availability check: in the body of
    an `if`/`elif` or a conditional expression whose test calls `...is_available()`
    (`torch.device("cuda" if torch.cuda.is_available() else "cpu")`).
    """
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def checks_availability(test):
        return any(isinstance(n, ast.Attribute) and n.attr == "is_available"
                   for n in ast.walk(test))

    def guarded(node):
        child, parent = node, parents.get(node)
        while parent is not None:
            if (isinstance(parent, (ast.If, ast.IfExp)) and child is not parent.test
                    and checks_availability(parent.test)):
                return True
            child, parent = parent, parents.get(parent)
        return False

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name, func = call_name(node), node.func
        literals = [(f"{kw.arg}=", kw.value) for kw in node.keywords if kw.arg == "device"]
        if name == "device" and isinstance(func, ast.Attribute):
            literals += [("", arg) for arg in node.args[:1]]
        if name == "to" and isinstance(func, ast.Attribute):
            literals += [("", arg) for arg in node.args]
        bad = [f"{name}({key}{lit.value!r})" for key, lit in literals if is_device_literal(lit)]
        if name == "cuda" and isinstance(func, ast.Attribute) and not node.args[:1]:
            bad.append(".cuda()")
        found += [(node.lineno, what) for what in bad if not guarded(node)]
    return found


@chapter_params()
def test_no_device_is_hard_coded(notebook_path):
    """A device is chosen by availability, never hard-coded (found statically, by the AST).

    The test machine has no GPU, so a hard-coded `torch.device("cuda")` fails there only by
    accident of the machine (and `"mps"` would never fail on Linux); the AST catches it on any
    machine. See `hard_coded_devices` for what is flagged and what counts as a check.
    """
    problems = [
        f"{cell_ref(notebook_path, n)}, line {line}: {what} outside an availability check"
        for n, tree in parsed_code_cells(read_notebook(notebook_path))
        for line, what in hard_coded_devices(tree)
    ]
    fail(problems, (
        f"{rel(notebook_path)} hard-codes a device: choose it by availability, `device = "
        "torch.device(\"cuda\" if torch.cuda.is_available() else \"mps\" if "
        "torch.backends.mps.is_available() else \"cpu\")`, and move with `.to(device)`; "
        f"{fix_hint(notebook_path)}"
    ))


@chapter_params()
def test_kernelspec_is_python3(notebook_path):
    nb = read_notebook(notebook_path)
    kernelspec = nb.metadata.get("kernelspec", {})
    expect(kernelspec.get("name") == "python3", (
        f"{rel(notebook_path)}: kernelspec is {kernelspec}; Colab and Binder expect python3"
    ))


# --- the chapter mould ----------------------------------------------------------------------


@stage_params()
def test_stage_chapter_has_every_section_of_the_mould(notebook_path):
    nb = read_notebook(notebook_path)
    level2 = {text for _, level, text in headings(nb) if level == 2}
    missing = [] if has_learning_goals(nb) else ["the `学习目标` admonition"]
    missing += [f"`## {name}`" for name in CLOSING_SECTIONS if name not in level2]
    expect(not missing, (
        f"{rel(notebook_path)} lacks {', '.join(missing)}: every stage chapter (01-08) has "
        "the mould of CONTRIBUTING.md (title, 学习目标, sections, ## 本章改了什么, ## 常见错误, "
        f"## 小结, ## 练习, with these exact texts); {fix_hint(notebook_path)}"
    ))


@stage_params()
def test_stage_chapter_works_both_examples_p_and_n(notebook_path):
    nb = read_notebook(notebook_path)
    level2 = [text for _, level, text in headings(nb) if level == 2]
    missing = [f"`## {name}：...` ({what})" for name, what in EXAMPLES.items()
               if not any(text.startswith(name) for text in level2)]
    expect(not missing, (
        f"{rel(notebook_path)} has no section {' and no '.join(missing)}: every stage chapter "
        f"(01-08) works both examples; {fix_hint(notebook_path)}"
    ))


@stage_params()
def test_mould_sections_come_in_order(notebook_path):
    nb = read_notebook(notebook_path)
    found = headings(nb)
    order = [text for _, level, text in found if level == 2 and text in CLOSING_SECTIONS]
    # A missing section is reported by test_stage_chapter_has_every_section_of_the_mould.
    expected = [name for name in CLOSING_SECTIONS if name in order]
    first_is_title = bool(found) and found[0][1] == 1
    expect(first_is_title and order == expected, (
        f"{rel(notebook_path)}: the chapter must open with its `# title` and close with "
        f"{', '.join('## ' + s for s in CLOSING_SECTIONS)} in this order, once each; its "
        f"first heading is {found[0][2] if found else None!r} (level {found[0][1] if found else 0})"
        f" and its closing headings are {order}; {fix_hint(notebook_path)}"
    ))


# --- exercises and solutions ----------------------------------------------------------------


def cells_after_exercises(nb):
    """The cells after the markdown cell that holds `## 练习` (none if there is no such cell)."""
    for index, level, text in headings(nb):
        if level == 2 and text == "练习":
            return index, nb.cells[index + 1:]
    return None, []


@chapter_params()
def test_every_solution_code_cell_is_folded_in_jupyter_and_in_the_book(notebook_path):
    """Every code cell after `## 练习` is folded in JupyterLab/Colab and in the HTML book.

    `hide-cell` folds it in the HTML book only; `jupyter: {source_hidden: true,
    outputs_hidden: true}` folds it in JupyterLab and Colab (PITFALLS.md).
    """
    nb = read_notebook(notebook_path)
    index, after = cells_after_exercises(nb)
    numbers = {id(c): n for n, c in numbered_code_cells(nb)}
    problems = []
    for cell in after:
        if cell.cell_type != "code" or id(cell) not in numbers:
            continue
        jupyter = cell.metadata.get("jupyter", {})
        lacks = [] if "hide-cell" in tags(cell) else ["tag hide-cell"]
        lacks += [f"jupyter.{key}: true" for key in ("source_hidden", "outputs_hidden")
                  if jupyter.get(key) is not True]
        if lacks:
            problems.append(f"{cell_ref(notebook_path, numbers[id(cell)])} lacks "
                            + ", ".join(lacks))
    fail(problems, (
        f"{rel(notebook_path)}: solution cells after `## 练习` must be folded; in "
        f"{rel(twin_of(notebook_path))} open each with\n{SOLUTION_METADATA}\nthen "
        f"{refresh_hint(notebook_path)}"
    ))


@chapter_params()
def test_every_dropdown_answer_is_folded_in_jupyter(notebook_path):
    """A markdown cell holding a `{dropdown}` answer is folded in JupyterLab/Colab too."""
    nb = read_notebook(notebook_path)
    problems, code_seen = [], -1
    for cell in nb.cells:
        if cell.cell_type == "code":
            code_seen += 1
        elif "{dropdown}" in cell.source:
            if cell.metadata.get("jupyter", {}).get("source_hidden") is not True:
                start = next(line for line in cell.source.splitlines() if "{dropdown}" in line)
                where = f"after {cell_ref(notebook_path, code_seen)}" if code_seen >= 0 else (
                    f"in {rel(notebook_path)}, before its first code cell")
                problems.append(f"the markdown cell {where} holding {start.strip()[:60]!r}")
    fail(problems, (
        f"{rel(notebook_path)}: a dropdown answer must be folded in Jupyter too; in "
        f"{rel(twin_of(notebook_path))} give it a markdown cell of its own opened with "
        '`+++ {"jupyter": {"source_hidden": true}}`, then ' + refresh_hint(notebook_path)
    ))


# --- cell length -----------------------------------------------------------------------------


def cell_lengths(path):
    """Lines of each code cell that holds code (blank lines at either end not counted)."""
    return [len(c.source.strip().splitlines()) for c in code_cells(read_notebook(path))]


@chapter_params()
def test_median_code_cell_of_the_chapter_is_at_most_6_lines(notebook_path):
    lengths = cell_lengths(notebook_path)
    median = statistics.median(lengths)
    longest = sorted(((length, n) for (n, _), length in
                      zip(numbered_code_cells(read_notebook(notebook_path)), lengths)),
                     reverse=True)[:5]
    expect(median <= MAX_CHAPTER_MEDIAN, (
        f"{rel(notebook_path)}: the median code cell has {median} lines, over "
        f"{MAX_CHAPTER_MEDIAN}; split setup cells (imports / seeds / device / helpers) and "
        "class-plus-demo cells, move prints out of loops (a training loop stays one cell). "
        f"Longest: {', '.join(f'Cell {n} ({length} lines)' for length, n in longest)}; "
        f"{fix_hint(notebook_path)}"
    ))


def test_median_code_cell_of_the_book_is_at_most_5_lines():
    lengths = {p.stem: cell_lengths(p) for p in CHAPTER_NOTEBOOKS}
    median = statistics.median([n for chapter in lengths.values() for n in chapter])
    per_chapter = ", ".join(f"{stem[:2]}: {statistics.median(ns)}" for stem, ns in lengths.items())
    expect(median <= MAX_BOOK_MEDIAN, (
        f"the median code cell of the book (every chapter's code cells together) has {median} "
        f"lines, over {MAX_BOOK_MEDIAN} (per chapter: {per_chapter}); split the longest "
        "chapters' cells in their twins in book/, then `make notebooks`"
    ))
