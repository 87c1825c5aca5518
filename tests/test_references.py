"""Glossary, citations and terminology across the book's sources."""

import re

import pytest

from conftest import BOOK_DIR, rel

GLOSSARY = BOOK_DIR / "appendix_c_glossary.md"
BIBFILE = BOOK_DIR / "references.bib"
SOURCES = sorted(BOOK_DIR.glob("*.md"))

TERM_ROLE = re.compile(r"\{term\}`([^`<]+?)(?:\s*<([^>]+)>)?`")
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")

# Renderings found in the tutorial translations this book grew from (regex -> the book's term).
MISTRANSLATIONS = {
    "自动区分": "自动微分",
    "自动升级": "autograd（自动求导）",
    "自动渐变": "autograd（自动求导）",
    "(?<!逐)渐变": "梯度",  # 逐渐变小 is fine
    "损耗": "损失",
    "反向螺旋体": "反向传播",
    "后向传递": "反向传播",
    "计算图形": "计算图",
    # One term per concept (TERMS.md; issue 10)
    "清空": "清零（梯度清零，zero_grad()/grad.zero_()）",
    "前向计算": "前向传播",
    "平方误差之和": "误差平方和",
    # Settled in the second editorial pass (issue 16: R23-R25, R42, R43)
    "步长[（(]\\s*`?stride": "步幅（stride；步长只指更新的步子大小）",
    "震荡": "振荡",
    "懒创建": "惰性创建",
    "稳定上限": "稳定界限",
    "调度": "分派（dispatch）",
    "便宜": "代价很小 / 最省事（“便宜”是英文 cheap 的直译）",
    "模子": "同一套结构",
    "(?<!打)印出": "打印",
}


def glossary_terms():
    """Terms defined in the glossary directive: unindented lines inside it."""
    text = GLOSSARY.read_text(encoding="utf-8")
    body = text.split(":::{glossary}", 1)[1].split("\n:::", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip() and not line.startswith(" ")]


def referenced_terms(exclude=()):
    used = {}
    for path in SOURCES:
        if path in exclude:
            continue
        for match in TERM_ROLE.finditer(path.read_text(encoding="utf-8")):
            term = (match.group(2) or match.group(1)).strip()
            used.setdefault(term, []).append(path)
    return used


def bib_keys():
    return set(re.findall(r"@\w+\{([^,\s]+),", BIBFILE.read_text(encoding="utf-8")))


def cited_keys():
    cited = {}
    for path in SOURCES:
        for match in CITE_ROLE.finditer(path.read_text(encoding="utf-8")):
            for key in match.group(1).split(","):
                cited.setdefault(key.strip(), []).append(path)
    return cited


def test_glossary_defines_terms():
    assert len(glossary_terms()) >= 30, f"{rel(GLOSSARY)}: could not find the glossary terms"


def test_every_glossary_term_is_linked_from_the_book():
    used = referenced_terms(exclude=(GLOSSARY,))
    unused = [term for term in glossary_terms() if term not in used]
    assert not unused, (
        f"glossary terms never linked from a page: {unused}; link the first use in a chapter "
        "with {term}`...`, or drop the entry from " + rel(GLOSSARY)
    )


def test_every_term_link_names_a_glossary_entry():
    defined = set(glossary_terms())
    for term, paths in referenced_terms().items():
        assert term in defined, (
            f"{{term}}`{term}` in {[rel(p) for p in paths]} is not defined in {rel(GLOSSARY)}"
        )


def test_every_citation_resolves_to_the_bibliography():
    keys = bib_keys()
    for key, paths in cited_keys().items():
        assert key in keys, (
            f"{[rel(p) for p in paths]} cite {key!r}, which is not in {rel(BIBFILE)}"
        )


def test_every_bibliography_entry_is_cited():
    cited = cited_keys()
    uncited = sorted(keys for keys in bib_keys() if keys not in cited)
    assert not uncited, f"{rel(BIBFILE)} holds entries no page cites: {uncited}"


@pytest.mark.parametrize("wrong", sorted(MISTRANSLATIONS))
def test_no_mistranslated_term(wrong):
    hits = [
        f"{rel(path)}:{number}"
        for path in SOURCES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(wrong, line)
    ]
    if hits:
        pytest.fail(
            f"{len(hits)} lines use {wrong!r}, the book's term is {MISTRANSLATIONS[wrong]!r} "
            f"(TERMS.md): {', '.join(hits[:20])}{' ...' if len(hits) > 20 else ''}. Fix the "
            "Markdown (a chapter's twin in book/), then `jupytext --sync book/NN_slug.md` (or "
            "`make notebooks`) so its notebook agrees",
            pytrace=False,
        )


# --- Chinese punctuation ------------------------------------------------------------------

CJK = re.compile(r"[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]")
# Directives whose body is code or data, not prose (MyST `{name}` after a fence).
CODE_DIRECTIVES = {"code-cell", "code-block", "code", "sourcecode", "math", "literalinclude",
                   "eval-rst", "raw", "bibliography", "toctree", "include", "mermaid"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(.*)$")
NOT_PROSE = [
    re.compile(r"(`+).+?\1"),                 # inline code and roles: {term}`张量`
    re.compile(r"\$\$.+?\$\$|\$[^$]+\$"),     # inline math
    re.compile(r"<[^<>]+>"),                   # HTML tags and their attributes
    re.compile(r"\]\([^)]*\)"),               # link targets: [text](url "title")
    re.compile(r"\{\{.*?\}\}"),                # substitutions
]


def prose_lines(text):
    """(line number, text) of each line of Markdown prose in a MyST source.

    Left out: the YAML front matter, `+++` cell breaks with their metadata, code blocks and
    code-like directives (code-cell, math, ...), the options of every directive (`:class: tip`
    lines and a `---` YAML block right after the fence), `$$` math blocks, and within a line
    inline code, roles, inline math, HTML tags and link targets. Prose-holding directives
    (admonition, dropdown, list-table, glossary, figure captions) are prose.
    """
    lines = text.splitlines()
    number = 0
    if lines and lines[0].strip() == "---":  # front matter
        number = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0) + 1
    stack = []  # open fences: (marker, is_code)
    options = False  # inside the options at the top of a directive
    yaml_block = False
    math_block = False
    while number < len(lines):
        line = lines[number]
        number += 1
        fence = FENCE.match(line)
        in_code = bool(stack) and stack[-1][1]
        if fence:
            marker, info = fence.group(1), fence.group(2).strip()
            closes = (stack and not info and marker[0] == stack[-1][0][0]
                      and len(marker) >= len(stack[-1][0]))
            if closes:
                stack.pop()
                options = yaml_block = False
                continue
            if not in_code:
                name = re.match(r"\{([\w-]+)\}", info)
                is_code = not name or name.group(1) in CODE_DIRECTIVES
                stack.append((marker, is_code))
                options = not is_code
                continue
        if in_code:
            continue
        if options:
            stripped = line.strip()
            if yaml_block:
                yaml_block = stripped != "---"
                continue
            if stripped == "---":
                yaml_block = True
                continue
            if re.match(r":[\w-]+:", stripped):
                continue
            options = False
        if line.startswith("+++"):
            continue
        if line.strip() == "$$":
            math_block = not math_block
            continue
        if math_block:
            continue
        yield number, line


def chinese_prose_quotes(path):
    """(line number, line) of each Chinese prose line that holds an ASCII double quote."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        prose = line
        for pattern in NOT_PROSE:
            prose = pattern.sub(" ", prose)
        if '"' in prose and CJK.search(prose):
            found.append((number, line))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_chinese_prose_quotes_with_full_width_marks(path):
    """Chinese prose quotes with “ ” (full-width), never ASCII `"`.

    Code (inline or in blocks), MyST metadata and directive options stay ASCII; see
    `prose_lines` for what counts as prose. A line counts as Chinese when, once its code
    and math are taken out, it holds a Chinese character or full-width punctuation.
    """
    found = chinese_prose_quotes(path)
    shown = "\n".join(f"  {rel(path)}:{number}: {line.strip()[:100]}"
                       for number, line in found[:15])
    more = f"\n  ... and {len(found) - 15} more" if len(found) > 15 else ""
    if found:
        pytest.fail(
            f"{rel(path)}: {len(found)} lines of Chinese prose use ASCII double quotes; write "
            f"“...” (or mark code with backticks):\n{shown}{more}\nFix the Markdown, then "
            f"`jupytext --sync {rel(path)}` if it is a chapter's twin (or `make notebooks`)",
            pytrace=False,
        )
