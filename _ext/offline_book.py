"""The book's own Sphinx extension: what a reader needs in mainland China, offline and on paper.

HTML
- MathJax is served from the build, never from a CDN. Why MathJax and not KaTeX prerendered at
  build time: MathJax is what Jupyter, JupyterLab and Colab typeset the same notebooks with, so the
  book and the notebooks accept the same TeX; it is the very script readers used to get from
  cdn.jsdelivr.net (mathjax@3 = 3.2.2), now from the npm registry at that pinned version
  (package.json / package-lock.json, installed by `make book` into node_modules/), so nothing about
  the typesetting changes; and the build needs no JavaScript runtime, only a copy. The cost is about
  8 MB of files in _static/mathjax/ (tex-mml-chtml.js plus the parts it loads on demand: TeX
  extensions, CHTML fonts, the menu and its accessibility tools).
- The launch (rocket) menu of every chapter gets Kaggle and SageMaker Studio Lab beside Colab and
  Binder (Colab needs Google, which mainland China cannot reach); both open the chapter's notebook
  on GitHub, derived from `repository.url` / `repository.branch` in _config.yml, like the theme's
  own buttons.
- The download menu of every page offers the whole-book PDF, the notebooks zip and the offline
  site zip; the role {takeaway}`pdf` (also `notebooks`, `site`) links them from a page's text.
  They are built after the HTML by scripts/build_downloads.py into _build/html/downloads/.
- Under each page's title: 报告问题 (a new issue on the book's repository, from the form
  .github/ISSUE_TEMPLATE/content.yml, with the chapter and the page's URL filled in), on chapter
  pages also 报告运行失败 (fails-to-run.yml), and 勘误 (the errata page, label `errata`). All of it
  derives from `repository.url`: links only, the page asks github.com for nothing.
- Markup that screen readers and axe-core stumbled over (tests/test_site.py runs axe on every
  page), corrected as each page is written (A11Y_FIXES): English or mismatched accessible names
  of the theme's buttons and of MyST-NB's folded cells, the deprecated ARIA role of the
  bibliography's entries, page content outside any landmark.

LaTeX (the PDF, `jupyter-book build . --builder pdflatex`, see _latex/pytorchbook.sty)
- The preface (the root page) is unnumbered front matter: without this its H2 sections became
  chapters 1-6 and stage 01 came out as chapter 7. The TOC captions become parts, the numbered
  ones numbered from chapter 1, the appendix part unnumbered (its titles carry their letters).
- In each chapter's 练习 section the solutions (folded cells and dropdowns in the HTML, which all
  follow the exercise list) are printed under a 参考答案 heading.
- Each figure's alt text (the notebook cell's `mystnb.image.alt`, which MyST-NB puts on the HTML
  <img>) goes to graphicx's `alt` key. TeX Live 2022's graphicx accepts and ignores it (the PDF
  is not tagged); LaTeX's tagging code writes it as the figure's /Alt once the PDF is tagged. In
  the PDF as built today, a reader meets each figure's caption from the same cell.
"""

import html
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlencode

from docutils import nodes
from sphinx import addnodes
from sphinx.errors import ExtensionError
from sphinx.locale import get_translation
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.osutil import relative_uri
from sphinx.writers.latex import LaTeXTranslator

LOGGER = logging.getLogger(__name__)
booktheme = get_translation("booktheme")  # the theme's own catalogue: "Launch on" -> zh_CN

# --- the take-away downloads ---------------------------------------------------------------

DOWNLOAD_DIR = "downloads"  # inside the HTML output, beside index.html
DOWNLOAD_LABELS = {
    "pdf": "整本书 PDF",
    "notebooks": "十章笔记本（.zip）",
    "site": "离线网页版（.zip）",
}


def repository_parts(repo_url):
    """(org, repo) of a GitHub repository URL."""
    parts = repo_url.rstrip("/").removesuffix(".git").split("/")
    if len(parts) < 5 or parts[2] != "github.com":
        raise ExtensionError(f"repository.url must be a GitHub repository URL, not {repo_url!r}")
    return parts[3], parts[4]


def download_files(repo_url):
    """The download file names (relative to the HTML output), named after the repository."""
    _, repo = repository_parts(repo_url)
    return {
        "pdf": f"{DOWNLOAD_DIR}/{repo}.pdf",
        "notebooks": f"{DOWNLOAD_DIR}/{repo}-notebooks.zip",
        "site": f"{DOWNLOAD_DIR}/{repo}-html.zip",
    }


def site_url(repo_url):
    """Where CI deploys the HTML (GitHub Pages of the repository); the PDF links there."""
    org, repo = repository_parts(repo_url)
    return f"https://{org.lower()}.github.io/{repo}/"


def theme_repository(app):
    options = app.config.html_theme_options
    return options.get("repository_url", ""), options.get("repository_branch") or "main"


class takeaway_reference(nodes.reference):  # noqa: N801
    """A link to a download; its URL depends on the builder (see ResolveTakeaways)."""


def takeaway_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """{takeaway}`pdf` or {takeaway}`文字 <pdf>`: a link to one of the downloads."""
    label, _, key = text.rpartition("<")
    key = key.rstrip(">").strip() if label else text.strip()
    label = label.strip() or DOWNLOAD_LABELS.get(key, "")
    if key not in DOWNLOAD_LABELS:
        message = inliner.reporter.error(
            f"{{takeaway}} knows {sorted(DOWNLOAD_LABELS)}, not {key!r}", line=lineno
        )
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    node = takeaway_reference(rawtext, label, refuri="#", takeaway=key)
    return [node], []


class ResolveTakeaways(SphinxPostTransform):
    """HTML: a link relative to the page; LaTeX: the file on the deployed site."""

    default_priority = 5

    def run(self, **kwargs):
        repo_url, _ = theme_repository(self.app)
        files = download_files(repo_url)
        for node in list(self.document.findall(takeaway_reference)):
            target = files[node["takeaway"]]
            if self.app.builder.format == "html":
                here = self.app.builder.get_target_uri(self.env.docname)
                uri = relative_uri(here, target)
            else:
                uri = site_url(repo_url) + target
            node.replace_self(nodes.reference(node.rawsource, "", *node.children, refuri=uri))


# --- MathJax from the build ------------------------------------------------------------------

MATHJAX_SCRIPT = "tex-mml-chtml.js"  # the component Sphinx loads from the CDN by default
# What that component loads on demand, relative to mathjax/es5/: TeX extensions (autoload),
# MathML entities, the CHTML fonts, the menu and its accessibility tools (speech rules).
MATHJAX_PARTS = [MATHJAX_SCRIPT, "input", "output/chtml", "a11y", "sre", "ui"]


def mathjax_package(app):
    return Path(app.confdir) / "node_modules" / "mathjax"


def set_mathjax_path(app, config):
    # relative: Sphinx loads it from _static/ (pathto), so the page works from file:// too
    config.mathjax_path = f"mathjax/{MATHJAX_SCRIPT}"


def install_mathjax(app):
    """Checks the pinned MathJax is installed and copies it into _static/mathjax/ (before the
    pages are written, so Sphinx's ?v= checksum on the script tag is the same on every build)."""
    if app.builder.format != "html":
        return
    package = mathjax_package(app)
    pinned = json.loads((Path(app.confdir) / "package.json").read_text())["dependencies"]["mathjax"]
    installed = package / "package.json"
    version = json.loads(installed.read_text())["version"] if installed.exists() else None
    if version != pinned:
        raise ExtensionError(
            f"MathJax {pinned} (package.json) is not installed in {package} "
            f"(found {version}); run `make book`, which runs `npm ci`"
        )
    source = package / "es5"
    target = Path(app.outdir) / "_static" / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    shutil.copy2(package / "LICENSE", target / "LICENSE")


# --- header buttons: launch on Kaggle / SageMaker Studio Lab, download the book ---------------


def notebook_path(app, pagename):
    """The page's notebook, relative to the repository root (as the theme's Colab button)."""
    path = Path(app.env.doc2path(pagename))
    if path.suffix != ".ipynb" and path.with_suffix(".ipynb").exists():
        path = path.with_suffix(".ipynb")
    if path.suffix != ".ipynb":
        return None
    relpath = path.relative_to(app.srcdir).as_posix()
    docs = app.config.html_theme_options.get("path_to_docs", "").strip("/")
    return f"{docs}/{relpath}" if docs else relpath


def launch_links(repo_url, branch, notebook):
    org, repo = repository_parts(repo_url)
    github = f"https://github.com/{org}/{repo}/blob/{branch}/{notebook}"
    return {
        "Kaggle": ("fab fa-kaggle", f"https://kaggle.com/kernels/welcome?src={github}"),
        "SageMaker Studio Lab": (
            "fab fa-aws",
            f"https://studiolab.sagemaker.aws/import/github/{org}/{repo}/blob/{branch}/{notebook}",
        ),
    }


def find_group(context, label):
    for button in context.get("header_buttons", []):
        if button.get("type") == "group" and button.get("label") == label:
            return button
    return None


def add_header_links(app, pagename, templatename, context, doctree):
    repo_url, branch = theme_repository(app)
    launch = find_group(context, "launch-buttons")
    notebook = notebook_path(app, pagename) if pagename in app.env.all_docs else None
    if launch is not None and notebook:
        for name, (icon, url) in launch_links(repo_url, branch, notebook).items():
            launch["buttons"].append({
                "type": "link", "text": name, "icon": icon, "url": url,
                "tooltip": booktheme("Launch on") + " " + name,
                "label": "launch-" + name.split()[0].lower() + "-button",
            })
    download = find_group(context, "download-buttons")
    if download is not None:
        for button in download["buttons"]:  # the theme's window.print(), beside the whole book
            if button.get("label") == "download-pdf-button":
                button["text"] = "本页 .pdf"
        icons = {"pdf": "fas fa-book", "notebooks": "fas fa-file-archive", "site": "fas fa-globe"}
        for key, target in download_files(repo_url).items():
            download["buttons"].append({
                "type": "link", "text": DOWNLOAD_LABELS[key], "icon": icons[key],
                "url": context["pathto"](target, 1), "tooltip": DOWNLOAD_LABELS[key],
                "label": f"download-book-{key}-button",
            })


# --- report a problem: links under each page's title --------------------------------------

# The issue forms in .github/ISSUE_TEMPLATE/ and the fields the links fill in (the ids of their
# `input` fields; tests/test_accessibility.py checks that both forms have them).
ISSUE_FORMS = {"content": "content.yml", "run": "fails-to-run.yml"}
REPORT_LABELS = {"content": "报告问题", "run": "报告运行失败"}
REPORT_FIELDS = ("chapter", "page")
ERRATA_LABEL = "errata"  # the errata page's label, (errata)= in book/errata.md
ERRATA_TEXT = "勘误"


def issue_url(repo_url, form, title, fields):
    """A new issue on the repository from an issue form, with a title and fields filled in."""
    org, repo = repository_parts(repo_url)
    query = urlencode({"template": ISSUE_FORMS[form], "title": title, **fields})
    return f"https://github.com/{org}/{repo}/issues/new?{query}"


def page_chapter(app, pagename):
    """How the page is named in a report: 第 5 章 nn 模块, or the title of an unnumbered page."""
    title = app.env.titles[pagename].astext().strip()
    number = app.env.toc_secnumbers.get(pagename, {}).get("")
    return f"第 {'.'.join(map(str, number))} 章 {title}" if number else title


def report_links(app, pagename, repo_url):
    """{key: URL} of the report links of a page: content always, run for a notebook page."""
    chapter = page_chapter(app, pagename)
    fields = {"chapter": chapter, "page": site_url(repo_url) + pagename + app.builder.out_suffix}
    forms = ["content", "run"] if notebook_path(app, pagename) else ["content"]
    return {form: issue_url(repo_url, form, f"[{chapter}] ", fields) for form in forms}


def report_paragraph(app, pagename, context, repo_url):
    links = [
        f'<a class="reference external" href="{html.escape(url)}" target="_blank" '
        f'rel="noopener">{REPORT_LABELS[form]}</a>'
        for form, url in report_links(app, pagename, repo_url).items()
    ]
    label = app.env.domaindata["std"]["labels"].get(ERRATA_LABEL)
    if label and label[0] != pagename:
        href = context["pathto"](label[0])
        links.append(f'<a class="reference internal" href="{html.escape(href)}">{ERRATA_TEXT}</a>')
    return f'<p class="pbe-report">{" · ".join(links)}</p>'


def add_report_links(app, pagename, templatename, context, doctree):
    """The report links right after the page's H1 (every page built from a source file)."""
    body = context.get("body")
    if doctree is None or not body or "</h1>" not in body:
        return
    repo_url, _ = theme_repository(app)
    paragraph = report_paragraph(app, pagename, context, repo_url)
    context["body"] = body.replace("</h1>", "</h1>\n" + paragraph, 1)


# --- accessibility: markup corrected as each page is written ---------------------------------

# (what it fixes, pattern, replacement), applied to every HTML page the builder writes. Each was
# a violation axe-core reported (tests/test_site.py, test_page_has_no_serious_or_critical_
# accessibility_violation); when a theme upgrade changes the markup, the pattern stops matching
# and that test names the rule again.
A11Y_FIXES = [
    # label-content-name-mismatch (serious): the search field's name was 搜索 while it shows
    # "搜索 Ctrl+K"; without the aria-label its name is the text it shows.
    ("search field named by its text",
     re.compile(r'(<button class="btn search-button-field[^"]*"[^>]*?) aria-label="[^"]*"'),
     r"\1"),
    # label-content-name-mismatch (serious): the theme switch was named "Color mode" (English)
    # while the title of the icon it shows (亮色, 暗色 or System Settings) counts as its text;
    # named after all three modes it cycles through, its name holds whichever one is shown.
    ("theme switch named in Chinese, after its modes",
     re.compile(r'aria-label="Color mode" data-bs-title="Color mode"'),
     'aria-label="切换颜色模式：亮色、暗色、跟随系统" data-bs-title="颜色模式"'),
    ("theme switch icons are decoration",
     re.compile(r'<i class="theme-switch '), '<i aria-hidden="true" class="theme-switch '),
    ("theme switch: the system setting in Chinese",
     re.compile(r'title="System Settings"'), 'title="跟随系统"'),
    # label-content-name-mismatch (serious): MyST-NB names a folded cell's toggle "Toggle hidden
    # content" while it shows 显示代码 / 隐藏代码; without the aria-label it is named by them.
    ("folded cells named by their text",
     re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>"),
    # aria-required-children (critical), aria-deprecated-role (minor): docutils marks each
    # bibliography entry of the role="list" with the deprecated role doc-biblioentry.
    ("bibliography entries are list items",
     re.compile(r'role="doc-biblioentry"'), 'role="listitem"'),
    # region (moderate): the book's title in the sidebar was outside every landmark.
    ("the sidebar is navigation",
     re.compile(r'<div id="pst-primary-sidebar" class="bd-sidebar-primary bd-sidebar">'),
     '<div id="pst-primary-sidebar" class="bd-sidebar-primary bd-sidebar" role="navigation" '
     'aria-label="全书导航">'),
    ("the table of contents named in Chinese",
     re.compile(r'(<nav class="bd-links bd-docs-nav") aria-label="Main"'),
     r'\1 aria-label="全书目录"'),
]


def fix_markup(page):
    for _, pattern, replacement in A11Y_FIXES:
        page = pattern.sub(replacement, page)
    return page


def correct_markup_when_written(app):
    """Wraps the HTML builder's template rendering, so every page it writes is corrected."""
    if app.builder.format != "html" or not hasattr(app.builder, "templates"):
        return
    render = app.builder.templates.render

    def render_corrected(template, context):
        return fix_markup(render(template, context))

    app.builder.templates.render = render_corrected


# --- LaTeX: figures' alt text ------------------------------------------------------------------

GRAPHICS = re.compile(r"\\sphinxincludegraphics(\[[^\]]*\])?\{")


def visit_image_with_alt(self, node):
    """LaTeXTranslator.visit_image, plus the image's alt text as graphicx's `alt` key."""
    start = len(self.body)
    LaTeXTranslator.visit_image(self, node)
    alt = node.get("alt", "").strip()
    if not alt:
        return
    from sphinx.util.texescape import escape

    key = "alt={" + escape(" ".join(alt.split()), self.config.latex_engine) + "}"
    for i in range(start, len(self.body)):
        match = GRAPHICS.match(self.body[i])
        if match:
            options = match.group(1)
            merged = f"[{key},{options[1:-1]}]" if options else f"[{key}]"
            self.body[i] = (r"\sphinxincludegraphics" + merged + "{"
                            + self.body[i][match.end():])
            return


# --- LaTeX: front matter, parts, solutions ---------------------------------------------------

PREFACE_TITLE = "前言"
EXERCISES_TITLE = "练习"
SOLUTIONS_HEADING = (
    r"\pbesolutions{参考答案}"
    r"{以下是本章练习的参考答案；网页版和笔记本里，它们默认折叠在练习列表之后。}"
)


def raw_latex(text):
    return nodes.raw("", text + "\n", format="latex")


def is_solution(node):
    if not isinstance(node, nodes.container):
        return False
    folded_cell = node.get("nb_element") == "cell_code" and node.get("hide_mode") == "all"
    return folded_cell or node.get("design_component") == "dropdown"


class LatexBookStructure(SphinxPostTransform):
    """Runs on the whole book as one doctree (the LaTeX builder inlines every toctree)."""

    default_priority = 900
    builders = ("latex",)

    def run(self, **kwargs):
        root = self.config.root_doc
        if self.document.get("docname") != root:
            return
        book = next(iter(self.document.findall(nodes.section)))  # the root page's H1: the title
        toctrees = list(self.env.get_doctree(root).findall(addnodes.toctree))
        wrappers = [n for n in book.children
                    if isinstance(n, nodes.compound) and "toctree-wrapper" in n["classes"]]
        if len(wrappers) != len(toctrees):
            raise ExtensionError(
                f"the root page has {len(toctrees)} toctrees but {len(wrappers)} at its top level"
            )
        # the root page's own text becomes an unnumbered chapter 前言 (front matter)
        own = [n for n in book.children[1:] if n not in wrappers]
        preface = nodes.section("", nodes.title("", PREFACE_TITLE), ids=["pbe-preface"])
        for node in own:
            book.remove(node)
            preface.append(node)
        book.insert(1, preface)
        book.insert(1, raw_latex(r"\pbeunnumbered"))
        for wrapper, toctree in zip(wrappers, toctrees):
            numbered = r"\pbenumbered" if toctree.get("numbered") else r"\pbeunnumbered"
            caption = toctree.get("caption")
            part = rf"\part{{{self.escape(caption)}}}" if caption else ""
            wrapper.insert(0, raw_latex(numbered + part))
        for chapter in self.document.findall(addnodes.start_of_file):
            self.mark_solutions(chapter)

    def escape(self, text):
        from sphinx.util.texescape import escape

        return escape(text, self.config.latex_engine)

    def mark_solutions(self, chapter):
        for section in chapter.findall(nodes.section):
            title = section.next_node(nodes.title)
            if title is None or title.astext().strip() != EXERCISES_TITLE:
                continue
            first = next((n for n in section.children if is_solution(n)), None)
            if first is not None:
                section.insert(section.index(first), raw_latex(SOLUTIONS_HEADING))


def setup(app):
    app.connect("config-inited", set_mathjax_path)
    app.connect("builder-inited", install_mathjax)
    # after the theme's own buttons (priority 501), so the groups exist
    app.connect("html-page-context", add_header_links, priority=502)
    app.connect("html-page-context", add_report_links, priority=502)
    app.connect("builder-inited", correct_markup_when_written)
    app.add_node(nodes.image, override=True,
                 latex=(visit_image_with_alt, LaTeXTranslator.depart_image))
    app.add_node(takeaway_reference)
    app.add_role("takeaway", takeaway_role)
    app.add_post_transform(ResolveTakeaways)
    app.add_post_transform(LatexBookStructure)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
