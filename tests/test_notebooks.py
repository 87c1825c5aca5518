"""Promises about the stored chapter notebooks.

nbval (run over notebooks/ by the same pytest command) checks that every stored text output
is reproduced. It cannot notice a notebook that has no outputs at all, or one assembled from
several partial runs, so these tests check what nbval does not.
"""

import ast
import re
import sys

import pytest

from conftest import (
    CHAPTER_NOTEBOOKS,
    NOTEBOOK_DIR,
    chapter_params,
    code_cells,
    read_notebook,
    refresh_hint,
    rel,
)

ALLOWED_THIRD_PARTY = {"torch", "numpy", "matplotlib"}
# Standard-library modules that read or write files, talk to the network or run programs.
FORBIDDEN_MODULES = {
    "os", "pathlib", "shutil", "subprocess", "socket", "urllib", "http", "ftplib",
    "requests", "pickle", "shelve", "tempfile", "glob", "io", "sqlite3", "zipfile",
    "tarfile", "webbrowser", "smtplib", "ssl", "asyncio",
}
# Calls that read or write files (whatever object they are called on).
FORBIDDEN_CALLS = {
    "open", "save", "load", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "savefig", "imsave", "imread", "urlopen", "download", "memmap",
}
PLOT_TEXT_METHODS = {
    "set_xlabel", "set_ylabel", "set_title", "suptitle", "xlabel", "ylabel", "title",
    "text", "annotate", "legend", "set",
}
PLOT_TEXT_KEYWORDS = {"label", "title", "xlabel", "ylabel"}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
LONG_FLOAT = re.compile(r"\d\.\d{9,}")


def is_raising_cell(cell):
    return "raises-exception" in cell.metadata.get("tags", [])


def parsed_code(nb):
    """The notebook's code as one Python module (IPython magics would not parse)."""
    return ast.parse("\n\n".join(c.source for c in code_cells(nb)))


def text_outputs(nb):
    for cell in code_cells(nb):
        for output in cell.outputs:
            if output.output_type == "stream":
                yield cell, output.text
            elif output.output_type in ("execute_result", "display_data"):
                yield cell, output.data.get("text/plain", "")


def test_there_are_chapter_notebooks():
    assert CHAPTER_NOTEBOOKS, f"no notebooks/NN_slug.ipynb found in {NOTEBOOK_DIR}"


@chapter_params()
def test_every_code_cell_was_executed(notebook_path):
    nb = read_notebook(notebook_path)
    unrun = [i for i, c in enumerate(code_cells(nb)) if c.execution_count is None]
    assert not unrun, (
        f"{rel(notebook_path)}: {len(unrun)} code cell(s) have no stored outputs "
        f"(never executed); {refresh_hint(notebook_path)}"
    )


@chapter_params()
def test_outputs_come_from_one_fresh_top_to_bottom_run(notebook_path):
    nb = read_notebook(notebook_path)
    counts = [c.execution_count for c in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{rel(notebook_path)}: execution counts are {counts}, not 1..{len(counts)} in order, "
        f"so the outputs do not come from one fresh run; {refresh_hint(notebook_path)}"
    )


@chapter_params()
def test_no_output_is_an_error_or_stderr(notebook_path):
    nb = read_notebook(notebook_path)
    for i, cell in enumerate(code_cells(nb), start=1):
        for output in cell.outputs:
            if output.output_type == "error" and not is_raising_cell(cell):
                pytest.fail(
                    f"{rel(notebook_path)}, code cell {i}: stored error {output.ename}: "
                    f"{output.evalue}. Fix the cell (or tag it raises-exception if the error "
                    f"is the lesson), then {refresh_hint(notebook_path)}"
                )
            if output.output_type == "stream" and output.name == "stderr":
                pytest.fail(
                    f"{rel(notebook_path)}, code cell {i}: stderr output (a warning?) "
                    f"{output.text[:200]!r}. Fix its cause, then {refresh_hint(notebook_path)}"
                )


@chapter_params()
def test_cells_tagged_raises_exception_do_raise(notebook_path):
    nb = read_notebook(notebook_path)
    for i, cell in enumerate(code_cells(nb), start=1):
        if is_raising_cell(cell):
            assert any(o.output_type == "error" for o in cell.outputs), (
                f"{rel(notebook_path)}, code cell {i} is tagged raises-exception "
                f"but stores no error; remove the tag or fix the cell"
            )


@chapter_params()
def test_notebook_stores_a_png_figure(notebook_path):
    nb = read_notebook(notebook_path)
    pngs = [
        o for c in code_cells(nb) for o in c.outputs
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert pngs, f"{rel(notebook_path)}: no PNG figure stored (every chapter plots its loss)"


@chapter_params()
def test_no_figure_is_stored_as_svg(notebook_path):
    # nbval compares SVG as text, which changes every run.
    nb = read_notebook(notebook_path)
    for cell in code_cells(nb):
        for output in cell.outputs:
            assert "image/svg+xml" not in output.get("data", {}), (
                f"{rel(notebook_path)}: an SVG figure is stored; store PNG"
            )


@chapter_params()
def test_notebook_prints_a_shape_table(notebook_path):
    nb = read_notebook(notebook_path)
    header = re.compile(r"^name\s+shape\s+meaning", re.MULTILINE)
    assert any(header.search(text) for _, text in text_outputs(nb)), (
        f"{rel(notebook_path)}: no traced-shape table (a 'name shape meaning' printout)"
    )


@chapter_params()
def test_no_stored_output_holds_a_memory_address_or_a_bare_plot_repr(notebook_path):
    nb = read_notebook(notebook_path)
    for _, text in text_outputs(nb):
        assert not re.search(r" at 0x[0-9a-f]+", text), (
            f"{rel(notebook_path)}: output {text[:120]!r} holds a memory address, "
            "which changes every run"
        )


@chapter_params()
def test_floats_are_printed_at_a_modest_precision(notebook_path):
    nb = read_notebook(notebook_path)
    for _, text in text_outputs(nb):
        match = LONG_FLOAT.search(text)
        assert not match, (
            f"{rel(notebook_path)}: output prints {match.group(0)}...; format floats with "
            "4-6 significant digits so outputs are stable across machines"
        )


@chapter_params()
def test_notebook_imports_only_torch_numpy_matplotlib_and_stdlib(notebook_path):
    tree = parsed_code(read_notebook(notebook_path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    allowed = ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names)
    assert imported <= allowed, (
        f"{rel(notebook_path)} imports {sorted(imported - allowed)}; "
        "chapters may import only torch, numpy, matplotlib and the standard library"
    )


@chapter_params()
def test_notebook_does_no_file_or_network_io(notebook_path):
    tree = parsed_code(read_notebook(notebook_path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                names = [node.module or ""]
            bad = {n.split(".")[0] for n in names} & FORBIDDEN_MODULES
            assert not bad, f"{rel(notebook_path)}: imports {bad}, which do file/network I/O"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in FORBIDDEN_CALLS, (
                f"{rel(notebook_path)}, line {node.lineno} of its code: calls {name}(), "
                "which reads or writes files; chapters must be self-contained"
            )


@chapter_params()
def test_notebook_has_no_shell_commands_or_magics(notebook_path):
    nb = read_notebook(notebook_path)
    for cell in code_cells(nb):
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("!", "%")), (
                f"{rel(notebook_path)}: `{line.strip()}`; no shell commands, pip installs or "
                "magics (the notebook must run as plain Python on Colab)"
            )


@chapter_params()
def test_plot_text_has_no_chinese(notebook_path):
    # Matplotlib has no CJK font on Colab: Chinese labels render as boxes and warn on stderr.
    tree = parsed_code(read_notebook(notebook_path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        texts = [kw.value for kw in node.keywords if kw.arg in PLOT_TEXT_KEYWORDS]
        if name in PLOT_TEXT_METHODS:
            texts += list(node.args) + [kw.value for kw in node.keywords]
        for text_node in texts:
            for const in ast.walk(text_node):
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    assert not CJK.search(const.value), (
                        f"{rel(notebook_path)}, line {node.lineno} of its code: plot text "
                        f"{const.value!r} is Chinese; use English or math in figures"
                    )


@chapter_params()
def test_kernelspec_is_python3(notebook_path):
    nb = read_notebook(notebook_path)
    kernelspec = nb.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", (
        f"{rel(notebook_path)}: kernelspec is {kernelspec}; Colab and Binder expect python3"
    )
