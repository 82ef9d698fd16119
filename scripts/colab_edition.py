#!/usr/bin/env python
"""Write the Colab edition of every chapter into the built book (run by `make build`).

    python scripts/colab_edition.py            # after `jupyter-book build .`
    DDPM_BOOK_REF=v1.0 python scripts/colab_edition.py   # pin the install to a tag instead

Colab renders Markdown (marked), LaTeX (MathJax 2, in $...$ and $$...$$) and a little HTML, but no
MyST. For each chapter listed in `_toc.yml` this writes `_build/html/<colab_edition_dir>/<name>.ipynb`
(the folder is `launch_buttons.colab_edition_dir` in `_config.yml`), which is published with the
HTML and opened by the chapters' Colab buttons (book/_ext/colab_edition_button.py). The edition has
the chapter's cells, with:

* prose converted: glue roles become their stored values; {cite:p}/{cite:t} become
  "(Author, Year)" / "Author (Year)" and a references list closes the notebook (with a link to the
  book's bibliography); {eq} becomes the equation number the HTML shows and every labelled
  displayed equation gets that number as a \\tag{}; {ref}/{numref}/{doc} become the titles and
  numbers of the HTML; admonitions become quoted blocks with a bold title, dropdowns (exercise
  solutions) <details>; labels, targets and MyST comments disappear;
* outputs kept where they help (figures, printed checks), except the hidden glue records, the
  outputs the book removes (`remove-output`, `remove-stderr`) and the ipywidgets 8 slider views,
  which Colab (ipywidgets 7) cannot show: each becomes a still of the frame the slider starts at
  and one line saying that running the cell gives the slider;
* the first code cell installs the package at the commit this edition is built from (or
  ``$DDPM_BOOK_REF``), in Colab only; chapters that train or sample at length ask Colab for a GPU.

Numbers and titles come from the Sphinx environment of the build just made
(`_build/.doctrees/environment.pickle`), glue values from the notebooks' stored outputs, so the
edition says what the HTML says. Anything MyST that this script does not know how to convert stops
it with an error naming the chapter and the construct (tests/test_colab_edition.py also checks
that no MyST is left).
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
SOURCE_BRANCH = CONFIG["repository"].get("branch", "main")
LAUNCH = CONFIG["launch_buttons"]
EDITION_DIR = LAUNCH.get("colab_edition_dir", "colab")
REF_ENV = "DDPM_BOOK_REF"  # overrides the commit the install is pinned to (CI: the pushed SHA)

# Chapters that train or sample at length: the edition asks Colab for a GPU runtime (T4). Read from
# the chapters' own "Running this notebook" notes: 04 (two full 1,000-term bounds, samples),
# 05 (two short training runs), 06 (training, mixed precision on a GPU), 07 (1,000-step DDPM and
# the sampler comparison), 08 (a 2-D network trained, 600 guided digits sampled).
GPU_CHAPTERS = ("04", "05", "06", "07", "08")

ADMONITIONS = {"admonition", "note", "tip", "hint", "important", "warning", "caution", "attention",
               "danger", "error", "seealso"}
SLIDER_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
NBVAL_COMMENT = re.compile(r"^\s*# NBVAL_\w+\s*$")
PIP_LINE = re.compile(r"^(?P<indent>\s+)%pip install\b.*$", re.MULTILINE)
GIT_REF = re.compile(r"(git\+" + re.escape(REPO_URL) + r"(?:\.git)?)(?:@[\w./-]+)?")
ROLE = re.compile(r"\{(?P<name>[a-z][\w:-]*)\}`(?P<body>[^`]*)`")
DIRECTIVE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*?)\s*$")
CODE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
TARGET = re.compile(r"^\s*\((?P<label>[\w:.-]+)\)=\s*$")
DMATH_LABEL = re.compile(r"^(?P<body>.*)\$\$\s*\((?P<label>[\w:.-]+)\)\s*$")


class EditionError(RuntimeError):
    """A chapter uses MyST that the Colab edition cannot convert."""


def pages_url() -> str:
    """Where the book is published: `html.baseurl` if set, else GitHub Pages of the repository."""
    base = (CONFIG.get("html") or {}).get("baseurl") or ""
    if not base:
        owner, repo = REPO_URL.removeprefix("https://github.com/").split("/")[:2]
        base = f"https://{owner.lower()}.github.io/{repo}/"
    return base if base.endswith("/") else base + "/"


def build_ref() -> tuple[str, str | None]:
    """The git ref the install pins (``$DDPM_BOOK_REF`` or HEAD) and a warning, if any."""
    ref = os.environ.get(REF_ENV, "").strip()
    if ref:
        return ref, None
    try:
        ref = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"colab_edition: cannot read the git commit ({err}); set {REF_ENV}") from err
    warning = None
    if dirty:
        warning = (f"the working tree has uncommitted changes: the Colab edition installs the package "
                   f"at HEAD ({ref[:12]}), which does not contain them")
    return ref, warning


def chapter_docnames() -> list[str]:
    """Chapter docnames (chapters/NN_name) in the order of `_toc.yml`."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = re.findall(r"\bchapters/[\w.-]+", yaml.safe_dump(toc, sort_keys=False))
    return [f.removesuffix(".ipynb") for f in files]


def edition_path(docname: str) -> str:
    """Path of a chapter's edition relative to the HTML root, e.g. colab/04_elbo.ipynb."""
    return f"{EDITION_DIR}/{Path(docname).name}.ipynb"


# --------------------------------------------------------------------------------------------------
# What the HTML shows: numbers, titles, citations (from the Sphinx environment)


@dataclass
class Citation:
    key: str
    authors: str  # "Ho et al.", "Nichol and Dhariwal", "Anderson"
    year: str
    entry_md: str  # the bibliography's entry, as Markdown
    anchor: str  # book/bibliography.html#id12


@dataclass
class BookIndex:
    chapter_numbers: dict[str, str] = field(default_factory=dict)  # docname -> "4"
    titles: dict[str, str] = field(default_factory=dict)  # docname -> title
    equations: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (docname, "4.7")
    labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # label -> (doc, anchor, title)
    section_numbers: dict[tuple[str, str], str] = field(default_factory=dict)  # (doc, anchor) -> "4.3"
    citations: dict[str, Citation] = field(default_factory=dict)


def _latex_text(text: str) -> str:
    from pybtex.richtext import Text

    return Text.from_latex(text).render_as("text")


def _authors(persons) -> str:
    last = [_latex_text(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


def load_index(build_dir: Path) -> BookIndex:
    env_path = build_dir / ".doctrees" / "environment.pickle"
    if not env_path.exists():
        raise SystemExit(f"colab_edition: no {env_path}: build the book first (`make build`)")
    with env_path.open("rb") as f:
        env = pickle.load(f)
    index = BookIndex()
    for doc, nums in env.toc_secnumbers.items():
        if nums.get(""):
            index.chapter_numbers[doc] = ".".join(map(str, nums[""]))
        for anchor, num in nums.items():
            if anchor:
                index.section_numbers[(doc, anchor.lstrip("#"))] = ".".join(map(str, num))
    index.titles = {doc: node.astext() for doc, node in env.titles.items()}
    for label, (doc, _) in env.domaindata["math"]["objects"].items():
        num = env.toc_fignumbers.get(doc, {}).get("displaymath", {}).get(f"equation-{label}")
        if num:
            index.equations[label] = (doc, ".".join(map(str, num)))
    for label, (doc, anchor, title) in env.domaindata["std"]["labels"].items():
        index.labels[label] = (doc, anchor, str(title or ""))
    for cit in env.domaindata["cite"]["citations"]:
        persons = cit.entry.persons.get("author") or cit.entry.persons.get("editor") or []
        index.citations[cit.key] = Citation(
            key=cit.key,
            authors=_authors(persons),
            year=cit.entry.fields.get("year", "n.d."),
            entry_md=" ".join(cit.formatted_entry.text.render_as("markdown").split()),
            anchor=f"{cit.bibliography_key.docname}.html#{cit.citation_id}",
        )
    return index


# --------------------------------------------------------------------------------------------------
# Glue values (MyST-NB stores them in the code cells' outputs)


def glue_values(nb) -> dict[str, dict]:
    """name -> mime bundle (without MyST-NB's hidden-record prefix) of every glued value."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            record = out.get("metadata", {}).get("scrapbook")
            if record:
                cut = len(record.get("mime_prefix", ""))
                values[record["name"]] = {k[cut:]: v for k, v in out.get("data", {}).items()}
    return values


def is_hidden_glue(out) -> bool:
    record = out.get("metadata", {}).get("scrapbook")
    return bool(record and record.get("mime_prefix"))


# --------------------------------------------------------------------------------------------------
# Markdown: MyST -> what Colab renders


class Converter:
    def __init__(self, docname: str, index: BookIndex, glue: dict[str, dict], headings: dict[str, str]):
        self.doc = docname
        self.index = index
        self.glue = glue
        self.headings = headings  # label -> heading text (Markdown, math kept) of any chapter
        self.cited: list[str] = []

    def fail(self, what: str):
        raise EditionError(f"{self.doc}: {what}")

    # ---- inline roles
    def role(self, m: re.Match) -> str:
        name, body = m["name"], m["body"]
        if name in ("glue", "glue:text", "glue:", "glue:any"):
            return self.glue_text(body)
        if name == "glue:md":
            key = body.rsplit(":", 1)[0] if ":" in body else body
            data = self._glue_data(key)
            if "text/markdown" not in data:
                self.fail(f"glue:md `{key}` has no text/markdown value")
            return data["text/markdown"].strip()
        if name in ("cite", "cite:p", "cite:ps", "cite:t", "cite:ts"):
            return self.cite(body, textual=name.startswith("cite:t"))
        if name == "eq":
            label = body.strip()
            if label not in self.index.equations:
                self.fail(f"{{eq}} `{label}` is not a numbered equation of the book")
            doc, num = self.index.equations[label]
            return self._link(f"({num})", doc, f"equation-{label}")
        if name in ("ref", "numref", "doc"):
            return self.reference(name, body)
        if name == "math":
            return f"${body}$"
        self.fail(f"the role {{{name}}} has no Colab conversion (add one in scripts/colab_edition.py)")

    def _glue_data(self, key: str) -> dict:
        if "::" in key:
            self.fail(f"glue from another document (`{key}`) is not supported")
        if key not in self.glue:
            self.fail(f"glue key `{key}` has no stored value (execute the chapter)")
        return self.glue[key]

    def glue_text(self, body: str) -> str:
        from myst_nb.core.variables import format_plain_text

        key, _, fmt = body.rpartition(":") if ":" in body else (body, "", "s")
        data = self._glue_data(key)
        if "text/plain" not in data:
            self.fail(f"glue key `{key}` has no text/plain value")
        return format_plain_text(data["text/plain"], fmt or "s")

    def cite(self, body: str, textual: bool) -> str:
        keys = [k.strip() for k in body.split(",") if k.strip()]
        parts = []
        for key in keys:
            if key not in self.index.citations:
                self.fail(f"cite key `{key}` is not in the book's bibliography")
            if key not in self.cited:
                self.cited.append(key)
            c = self.index.citations[key]
            parts.append(f"{c.authors} ({c.year})" if textual else f"{c.authors}, {c.year}")
        return "; ".join(parts) if textual else f"({'; '.join(parts)})"

    def _link(self, text: str, doc: str, anchor: str = "") -> str:
        """Plain text inside this chapter; a link to the book's page for another document."""
        if doc == self.doc:
            return text
        url = f"{pages_url()}{doc}.html" + (f"#{anchor}" if anchor else "")
        return f"[{text}]({url})"

    def reference(self, name: str, body: str) -> str:
        explicit = re.fullmatch(r"(?P<text>.*?)\s*<(?P<target>[^<>]+)>", body, re.S)
        text, target = (explicit["text"], explicit["target"]) if explicit else (None, body.strip())
        if name == "doc":
            doc = os.path.normpath(os.path.join(os.path.dirname(self.doc), target)).removesuffix(".ipynb")
            doc = doc.removesuffix(".md")
            if doc not in self.index.titles:
                self.fail(f"{{doc}} `{target}` is not a page of the book")
            num = self.index.chapter_numbers.get(doc)
            title = self.index.titles[doc]
            return self._link(text or (f"{num}. {title}" if num else title), doc)
        if target not in self.index.labels:
            self.fail(f"{{{name}}} `{target}` is not a label of the book")
        doc, anchor, title = self.index.labels[target]
        if name == "numref":
            num = self.index.section_numbers.get((doc, anchor))
            if num is None:
                self.fail(f"{{numref}} `{target}` has no number in the book")
            shown = (text or "Section %s").replace("%s", num).replace("{number}", num)
            return self._link(shown, doc, anchor)
        return self._link(text or self.headings.get(target) or title, doc, anchor)

    def inline(self, line: str) -> str:
        return ROLE.sub(self.role, line)

    # ---- blocks
    def convert(self, text: str) -> str:
        out = self.block(text.split("\n"))
        text = "\n".join(out)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")

    def block(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            m = DIRECTIVE_OPEN.match(line)
            if m:
                end = self._close(lines, i, m["fence"])
                out.extend(self.directive(m["name"], m["arg"], lines[i + 1:end], m["indent"]))
                i = end + 1
                continue
            m = CODE_OPEN.match(line)
            if m and not line.strip().startswith("$"):
                end = self._close(lines, i, m["fence"])
                out.extend(lines[i:end + 1])
                i = end + 1
                continue
            if TARGET.match(line) or line.lstrip().startswith("%") or line.strip() == "+++":
                i += 1  # labels, MyST comments and block breaks disappear
                continue
            math = self.display_math(lines, i) if line.strip().startswith("$$") else None
            if math:
                end, block = math
                out.extend(block)
                i = end + 1
                continue
            out.append(self.inline(line))
            i += 1
        return out

    def _close(self, lines: list[str], start: int, fence: str) -> int:
        char, n = fence[0], len(fence)
        for j in range(start + 1, len(lines)):
            s = lines[j].strip()
            if len(s) >= n and set(s) == {char}:
                return j
        self.fail(f"unclosed fence {fence!r} at markdown line {start + 1}")

    def display_math(self, lines: list[str], start: int) -> tuple[int, list[str]] | None:
        """$$ ... $$ (label): the block, with \\tag{number} when it is labelled (None: inline $$)."""
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        first = lines[start].strip()
        single = re.fullmatch(r"\$\$(?P<body>.+?)\$\$\s*(?:\((?P<label>[\w:.-]+)\))?", first)
        if single:
            body, label, end = [single["body"].strip()], single["label"], start
        elif first.count("$$") >= 2:
            return None  # $$...$$ inside a paragraph (myst_dmath_double_inline): an inline line
        else:
            body = [first[2:]] if first[2:].strip() else []
            for end in range(start + 1, len(lines)):
                m = DMATH_LABEL.match(lines[end]) or re.match(r"^(?P<body>.*)\$\$\s*$", lines[end])
                if m:
                    break
            else:
                self.fail(f"unclosed $$ at markdown line {start + 1}")
            body += lines[start + 1:end]
            if m["body"].strip():
                body.append(m["body"].rstrip())
            label = m.groupdict().get("label")
        if label:
            if label not in self.index.equations:
                self.fail(f"labelled equation `{label}` has no number in the book")
            body.append(f"{indent}\\tag{{{self.index.equations[label][1]}}}")
        return end, [f"{indent}$$", *body, f"{indent}$$"]

    def directive(self, name: str, arg: str, body: list[str], indent: str) -> list[str]:
        options: dict[str, str] = {}
        if body and body[0].strip() == "---":  # YAML options block
            close = next((k for k in range(1, len(body)) if body[k].strip() == "---"), None)
            if close is None:
                self.fail(f"unclosed options block in {{{name}}}")
            options = yaml.safe_load("\n".join(body[1:close])) or {}
            body = body[close + 1:]
        while body and re.match(r"^\s*:[\w-]+:", body[0]):
            key, _, value = body.pop(0).strip()[1:].partition(":")
            options[key] = value.strip()
        classes = str(options.get("class", "")).split()
        inner = self.block(body)
        if name == "dropdown" or (name in ADMONITIONS and "dropdown" in classes):
            title = self.inline(arg) if arg and name in ("dropdown", "admonition") else name.capitalize()
            # Blank lines around the tags: Markdown inside <details> is parsed only after one, and
            # Colab shrinks text that follows an HTML tag directly (colabtools issue 5923).
            return ["", "<details>", f"<summary><b>{title}</b></summary>", "", *inner, "", "</details>", ""]
        if name in ADMONITIONS:
            if name == "admonition":
                title = self.inline(arg) or "Note"
            else:  # {note} and friends: the title is the kind, an argument starts the body
                title, inner = name.capitalize(), ([self.inline(arg)] if arg else []) + inner
            return ["", *self.quote([f"**{title}**", "", *inner]), ""]
        if name == "math":
            label = options.get("label")
            if label and label not in self.index.equations:
                self.fail(f"labelled equation `{label}` has no number in the book")
            tag = [f"\\tag{{{self.index.equations[label][1]}}}"] if label else []
            return ["$$", *body, *tag, "$$"]
        self.fail(f"the directive {{{name}}} has no Colab conversion (add one in scripts/colab_edition.py)")

    @staticmethod
    def quote(lines: list[str]) -> list[str]:
        """A Markdown block quote. Display math goes on one line, so that no '>' ends up in it."""
        out, math = [], None
        for line in lines:
            if math is not None:
                math.append(line.strip())
                if line.strip() == "$$":
                    out.append("> $$" + " ".join(math[1:-1]) + "$$")
                    math = None
                continue
            if line.strip() == "$$":
                math = [line]
                continue
            out.append(f"> {line}".rstrip())
        return out


def headings_by_label(nbs: dict[str, nbformat.NotebookNode]) -> dict[str, str]:
    """label -> the Markdown text of the heading right after its `(label)=` target."""
    found = {}
    for nb in nbs.values():
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            lines = cell.source.split("\n")
            for i, line in enumerate(lines):
                t = TARGET.match(line)
                if t:
                    nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
                    h = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", nxt)
                    if h:
                        found[t["label"]] = h[1]
    return found


# --------------------------------------------------------------------------------------------------
# Code cells


def colab_stack_requirements() -> str:
    """pyproject.toml's requirements on the packages Colab brings itself, e.g. 'torch>=2.4, ...'."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = ("torch", "numpy", "ipywidgets")
    found = {re.match(r"[\w.-]+", d)[0].lower(): d.replace(" ", "") for d in deps}
    return ", ".join(found[w] for w in wanted if w in found)


def pin_install(source: str, ref: str, docname: str) -> str:
    """The first cell's Colab-only %pip install, pinned to `ref` and saying why it is safe."""
    if not PIP_LINE.search(source) or not GIT_REF.search(source):
        raise EditionError(f"{docname}: the first code cell has no `%pip install ... git+{REPO_URL}`")

    ranges = colab_stack_requirements()

    def pinned(m: re.Match) -> str:
        pad = m["indent"]
        line = GIT_REF.sub(lambda g: f"{g[1]}@{ref}", m[0])
        why = textwrap.fill(
            "The book's package at the commit this Colab edition was built from. Colab's own "
            f"torch, numpy and ipywidgets 7.7.1 meet what it asks of them ({ranges}), and pip "
            "upgrades nothing already satisfied: they stay as Colab has them.",
            width=92, initial_indent=f"{pad}# ", subsequent_indent=f"{pad}# ", break_long_words=False)
        return f"{why}\n{line}"

    return PIP_LINE.sub(pinned, source, count=1)


def widget_still(view: dict, state: dict) -> tuple[str, str] | None:
    """(base64 PNG, description) of the frame a stored slider view starts at, or None."""
    def model(ref: str) -> dict:
        return state.get(ref.removeprefix("IPY_MODEL_"), {})

    queue, stack, slider = [view["model_id"]], None, None
    while queue:
        m = state.get(queue.pop(0), {})
        name = m.get("model_name")
        if name == "StackModel" and stack is None:
            stack = m
        elif name in ("SelectionSliderModel", "IntSliderModel", "FloatSliderModel") and slider is None:
            slider = m
        elif name and name.endswith("BoxModel"):
            queue += [c.removeprefix("IPY_MODEL_") for c in m["state"].get("children", [])]
    if stack is None:
        return None
    children = stack["state"]["children"]
    image = model(children[stack["state"].get("selected_index") or 0])
    buffers = [b for b in image.get("buffers", []) if b.get("path") == ["value"]]
    if image.get("model_name") != "ImageModel" or not buffers:
        return None
    what = "the slider"
    if slider is not None:
        s = slider["state"]
        labels = s.get("_options_labels") or []
        desc = s.get("description") or "value"
        if labels:
            what = f"the slider over {desc} = {labels[0]} … {labels[-1]}"
            shown = f"{desc} = {labels[s.get('index') or 0]}"
        else:
            shown = f"{desc} = {s.get('value')}"
        return buffers[0]["data"], f"A still at {shown}: run this cell to get {what}."
    return buffers[0]["data"], "A still of the slider's first frame: run this cell to get the slider."


def convert_outputs(cell, state: dict, docname: str) -> list:
    tags = set(cell.metadata.get("tags", []))
    if "remove-output" in tags:
        return []
    outputs = []
    for out in cell.get("outputs", []):
        if is_hidden_glue(out):
            continue
        if out.output_type == "stream" and out.name == "stderr" and "remove-stderr" in tags:
            continue
        data = out.get("data", {})
        if SLIDER_VIEW in data:
            still = widget_still(data[SLIDER_VIEW], state)
            if still is None:
                raise EditionError(f"{docname}: a stored widget view that is not a frame slider")
            png, caption = still
            outputs.append(nbformat.v4.new_output("display_data", data={
                "image/png": png, "text/plain": "<still of the slider>"}))
            outputs.append(nbformat.v4.new_output("display_data", data={
                "text/html": f"<p><em>{caption}</em></p>", "text/plain": caption}))
            continue
        out = copy.deepcopy(out)
        out.get("metadata", {}).pop("scrapbook", None)
        outputs.append(out)
    return outputs


def strip_nbval(source: str) -> str:
    return "\n".join(ln for ln in source.split("\n") if not NBVAL_COMMENT.match(ln)).lstrip("\n")


# --------------------------------------------------------------------------------------------------


def make_edition(docname: str, nb, index: BookIndex, headings: dict[str, str], ref: str):
    chapter_no = index.chapter_numbers.get(docname, "")
    conv = Converter(docname, index, glue_values(nb), headings)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    cells = []
    first_code = True
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            source = conv.convert(cell.source)
            new = nbformat.v4.new_markdown_cell(source, id=cell.get("id"))
            if not cells and chapter_no and source.startswith("# "):
                new.source = f"# {chapter_no}. {source[2:]}"
            cells.append(new)
        elif cell.cell_type == "code":
            source = strip_nbval(cell.source)
            if first_code:
                source = pin_install(source, ref, docname)
                first_code = False
            new = nbformat.v4.new_code_cell(source, id=cell.get("id"))
            new.metadata = copy.deepcopy(cell.metadata)
            new.execution_count = cell.get("execution_count")
            new.outputs = convert_outputs(cell, state, docname)
            cells.append(new)
        else:
            cells.append(copy.deepcopy(cell))
    if not cells or cells[0].cell_type != "markdown":
        raise EditionError(f"{docname}: the first cell is not the chapter's title")

    page = f"{pages_url()}{docname}.html"
    short = ref[:12] if re.fullmatch(r"[0-9a-f]{40}", ref) else ref
    about = (f"> **Colab edition** of chapter {chapter_no} of *{CONFIG['title']}*, made from "
             f"[the chapter in the book]({page}) at `{short}`. The first code cell installs the book's "
             "package at that same commit. Sliders are live while the notebook is connected to a "
             "runtime; until its cell has run, a slider shows a still of the frame it starts at.")
    cells.insert(1, nbformat.v4.new_markdown_cell(about, id="colab-edition-about"))
    if conv.cited:
        refs = sorted(conv.cited, key=lambda k: (index.citations[k].authors, index.citations[k].year))
        items = "\n".join(f"- {index.citations[k].entry_md}" for k in refs)
        cells.append(nbformat.v4.new_markdown_cell(
            f"## References\n\n{items}\n\nThe book's [bibliography]({pages_url()}"
            f"{index.citations[refs[0]].anchor.split('#')[0]}) lists every work it cites.",
            id="colab-edition-references"))

    meta = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
        "ddpm_book": {"chapter": docname, "source": f"{docname}.ipynb", "ref": ref},
    }
    if Path(docname).name[:2] in GPU_CHAPTERS:
        meta["accelerator"] = "GPU"
        meta["colab"]["gpuType"] = "T4"
    edition = nbformat.v4.new_notebook(cells=cells, metadata=meta)
    nbformat.validate(edition)
    return edition


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build",
                        help="jupyter-book's build folder (default: _build)")
    args = parser.parse_args(argv)
    ref, warning = build_ref()
    if warning:
        print(f"colab_edition: WARNING: {warning}", file=sys.stderr)
    index = load_index(args.build_dir)
    docs = chapter_docnames()
    nbs = {doc: nbformat.read(ROOT / f"{doc}.ipynb", as_version=4) for doc in docs}
    headings = headings_by_label(nbs)
    out_dir = args.build_dir / "html" / EDITION_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = {args.build_dir / "html" / edition_path(doc) for doc in docs}
    for stale in set(out_dir.glob("*.ipynb")) - wanted:  # a chapter renamed or left out of the toc
        stale.unlink()
    try:
        for doc in docs:
            edition = make_edition(doc, nbs[doc], index, headings, ref)
            nbformat.write(edition, args.build_dir / "html" / edition_path(doc))
    except EditionError as err:
        print(f"colab_edition: {err}", file=sys.stderr)
        return 1
    print(f"colab_edition: {len(docs)} Colab notebooks in {out_dir.relative_to(ROOT)}/, "
          f"installing ddpm_core @ {ref[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
