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
    hits = [rel(p) for p in SOURCES if re.search(wrong, p.read_text(encoding="utf-8"))]
    assert not hits, f"{hits} use {wrong!r}; the book's term is {MISTRANSLATIONS[wrong]!r}"
