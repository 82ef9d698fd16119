"""The Colab edition that `make build` writes (scripts/colab_edition.py), checked against the HTML.

* Every chapter page's Colab button opens `.../blob/<colab_edition_branch>/<path>` and that path,
  under `_build/html`, is the edition of that very chapter, written by this build.
* No MyST is left in any edition's prose (roles, directive fences, targets, labelled $$, MyST
  comments, substitutions); every glued value of the chapter is in it; every \\tag{} is an
  equation number the HTML shows; every citation the HTML shows appears as "(Author, Year)".
* The first code cell installs the package, in Colab only, at the build's commit.
* Colab's own torch, numpy and ipywidgets meet the package's requirements, so that install
  changes none of them; the slider views are stills; the GPU chapters ask Colab for a GPU.

Build first (`make build`; `make test` does it): a missing edition is a failure, never a skip.
``DDPM_BOOK_ROOT`` points these checks at another book folder (as in test_book_html.py).
"""

from __future__ import annotations

import html as html_lib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("DDPM_BOOK_ROOT", REPO))
HTML = ROOT / "_build" / "html"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
LAUNCH = CONFIG["launch_buttons"]
EDITION_BRANCH = LAUNCH.get("colab_edition_branch", "gh-pages")
EDITION_DIR = LAUNCH.get("colab_edition_dir", "colab")
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [f.removesuffix(".ipynb") for f in re.findall(r"\bchapters/[\w.-]+", yaml.safe_dump(TOC))]
BUILD_HINT = "build the book first: `make build` (it runs scripts/colab_edition.py after jupyter-book)"
# What Colab ships (https://colab.research.google.com, "!pip list"); the oldest numpy/torch it has
# had since ipywidgets 7.7.1 are the conservative ones to check against.
COLAB_VERSIONS = {"ipywidgets": ["7.7.1"], "numpy": ["1.26.4", "2.0.2"], "torch": ["2.5.1", "2.6.0"]}
GPU_CHAPTERS = ("04", "05", "06", "07", "08")

sys.path.insert(0, str(REPO / "scripts"))
import colab_edition  # noqa: E402  (the converter: its regexes say what MyST looks like)


def edition(doc: str) -> nbformat.NotebookNode:
    path = HTML / EDITION_DIR / f"{Path(doc).name}.ipynb"
    assert path.exists(), f"no Colab edition {path.relative_to(ROOT)}: {BUILD_HINT}"
    return nbformat.read(path, as_version=4)


def prose(nb) -> str:
    """The markdown cells without fenced code and inline code (where MyST-looking text is fine)."""
    text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    text = re.sub(r"^(\s*)(`{3,}|~{3,})[^\n]*\n.*?^\1\2\s*$", "", text, flags=re.S | re.M)
    return re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "", text, flags=re.S)


def chapter_html(doc: str) -> str:
    path = HTML / f"{doc}.html"
    assert path.exists(), f"no {path.relative_to(ROOT)}: {BUILD_HINT}"
    return path.read_text()


def expected_ref() -> str:
    ref = os.environ.get(colab_edition.REF_ENV, "").strip()
    if ref:
        return ref
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.parametrize("doc", CHAPTERS)
def test_colab_button_opens_this_chapters_edition(doc):
    page = chapter_html(doc)
    links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page))
    assert len(links) == 1, f"{doc}.html: expected one Colab link, found {sorted(links)}"
    url = html_lib.unescape(links.pop())
    org_repo = REPO_URL.removeprefix("https://github.com/")
    prefix = f"{LAUNCH['colab_url']}/github/{org_repo}/blob/{EDITION_BRANCH}/"
    assert url.startswith(prefix), f"{doc}.html: the Colab button opens {url}, not a file on {prefix}"
    published = HTML / url.removeprefix(prefix)  # the gh-pages branch holds _build/html as it is
    assert published.is_file(), f"{doc}.html: the Colab button opens {url}, but the build wrote no {published}"
    nb = nbformat.read(published, as_version=4)
    assert nb.metadata["ddpm_book"]["chapter"] == doc, f"{url} is the edition of another chapter"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_no_myst_left_in_the_prose(doc):
    text = prose(edition(doc))
    leftovers = {
        "role": re.findall(r"\{[a-z][\w:-]*\}`[^`]*`?", text),
        "directive fence": re.findall(r"^\s*(?:`{3,}|:{3,})\s*\{[\w:-]+\}.*$", text, re.M),
        "colon fence": re.findall(r"^\s*:{3,}.*$", text, re.M),
        "target": re.findall(r"^\s*\([\w:.-]+\)=\s*$", text, re.M),
        "labelled $$": re.findall(r"\$\$\s*\([\w:.-]+\)", text),
        "directive option": re.findall(r"^\s*>?\s*:(?:class|label|name|open):.*$", text, re.M),
        "MyST comment or block break": re.findall(r"^(?:%.*|\+\+\+.*)$", text, re.M),
        "substitution": re.findall(r"\{\{[^}]*\}\}", text),
    }
    leftovers = {k: v[:5] for k, v in leftovers.items() if v}
    assert not leftovers, f"{doc}: MyST left in the Colab edition's markdown: {leftovers}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_glued_number_is_shown(doc):
    from myst_nb.core.variables import format_plain_text

    source = nbformat.read(ROOT / f"{doc}.ipynb", as_version=4)
    glue = colab_edition.glue_values(source)
    text = "\n".join(c.source for c in edition(doc).cells if c.cell_type == "markdown")
    missing = []
    for cell in source.cells:
        if cell.cell_type != "markdown":
            continue
        for m in re.finditer(r"\{glue(?::text)?\}`([^`]+)`", cell.source):
            key, _, fmt = m[1].rpartition(":") if ":" in m[1] else (m[1], "", "s")
            value = format_plain_text(glue[key]["text/plain"], fmt or "s")
            if value not in text:
                missing.append(f"{key}={value}")
        for m in re.finditer(r"\{glue:md\}`([^`:]+)(?::\w+)?`", cell.source):
            if glue[m[1]]["text/markdown"].strip() not in text:
                missing.append(m[1])
    assert not missing, f"{doc}: glued values not shown in the Colab edition: {missing[:10]}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_equation_numbers_are_those_of_the_html(doc):
    text = "\n".join(c.source for c in edition(doc).cells if c.cell_type == "markdown")
    tags = re.findall(r"\\tag\{([^}]*)\}", text)
    shown = re.findall(r'<span class="eqno">\(([^)]*)\)', chapter_html(doc))
    assert tags == shown, f"{doc}: \\tag numbers {tags} differ from the HTML's equation numbers {shown}"
    for num in re.findall(r'href="#equation-[^"]*">\(([^)]*)\)</a>', chapter_html(doc)):
        assert f"({num})" in text, f"{doc}: the HTML refers to eq. ({num}); the Colab edition does not"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_citations_are_those_of_the_html(doc):
    nb = edition(doc)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    page = chapter_html(doc)
    cited = re.findall(r'href="\.\./book/bibliography\.html#[^"]*"[^>]*>([^<]*(?:<em>et al\.</em>)?[^<]*)</a>', page)
    for shown in {re.sub(r"</?em>", "", c) for c in cited}:
        if "," in shown:  # parenthetical: "Ho et al., 2020"
            assert shown in text, f"{doc}: the HTML cites '{shown}'; the Colab edition does not"
    if cited:
        refs = nb.cells[-1].source
        assert refs.startswith("## References") and "bibliography.html" in refs, (
            f"{doc}: the Colab edition does not end with its references and a link to the bibliography"
        )


@pytest.mark.parametrize("doc", CHAPTERS)
def test_install_is_pinned_to_the_builds_commit(doc):
    nb = edition(doc)
    ref = nb.metadata["ddpm_book"]["ref"]
    assert ref == expected_ref(), f"{doc}: the edition pins {ref}, the build's commit is {expected_ref()}"
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    guard = re.search(r"^if\s+[\"']google\.colab[\"']\s+in\s+sys\.modules\s*:\s*(?:#.*)?$", first, re.M)
    pips = re.findall(r"^\s+%pip install .*$", first, re.M)
    assert guard and pips and all(first.index(p) > guard.start() for p in pips), (
        f"{doc}: the install must stay under the Colab guard"
    )
    assert [re.findall(r"git\+(\S+?)@([\w./-]+)\"", p) for p in pips] == [[(REPO_URL, ref)]], (
        f"{doc}: the Colab install is {pips}, not git+{REPO_URL}@{ref}"
    )
    assert "--upgrade" not in first and " -U " not in first, f"{doc}: the install must not upgrade Colab's packages"


def test_colab_packages_meet_the_requirements():
    """pip upgrades nothing already satisfied: the pinned install leaves Colab's stack alone."""
    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name.lower(): Requirement(d) for d in deps}
    for name, versions in COLAB_VERSIONS.items():
        assert name in reqs, f"pyproject.toml no longer requires {name}: update this test"
        for v in versions:
            assert reqs[name].specifier.contains(v, prereleases=True), (
                f"Colab's {name} {v} does not meet {reqs[name]}: the Colab install would replace it"
            )


@pytest.mark.parametrize("doc", CHAPTERS)
def test_outputs_colab_can_show(doc):
    nb, source = edition(doc), nbformat.read(ROOT / f"{doc}.ipynb", as_version=4)
    assert "widgets" not in nb.metadata, f"{doc}: ipywidgets 8 state in the Colab edition"
    views = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                for c in source.cells if c.cell_type == "code" and "remove-output" not in c.metadata.get("tags", [])
                for o in c.get("outputs", []))
    stills = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "run this cell to get" in o.get("data", {}).get("text/plain", "")]
    assert len(stills) == views, f"{doc}: {views} slider views but {len(stills)} stills with their note"
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            data = o.get("data", {})
            assert "application/vnd.jupyter.widget-view+json" not in data, f"{doc}: a widget view left"
            assert not any(k.startswith("application/papermill") for k in data), f"{doc}: a glue record left"
    gpu = Path(doc).name[:2] in GPU_CHAPTERS
    assert (nb.metadata.get("accelerator") == "GPU") == gpu, f"{doc}: Colab accelerator metadata"
    assert (nb.metadata.get("colab", {}).get("gpuType") == "T4") == gpu


def test_converter_turns_each_myst_construct_into_what_colab_renders():
    """The conversion rules on a small page (no build needed)."""
    c = colab_edition
    index = c.BookIndex(
        chapter_numbers={"chapters/04_x": "4"}, titles={"chapters/04_x": "X"},
        equations={"eq-a": ("chapters/04_x", "4.1"), "eq-b": ("chapters/03_y", "3.2")},
        labels={"sec-a": ("chapters/04_x", "sec-a", "Plain title")},
        citations={"ho2020ddpm": c.Citation("ho2020ddpm", "Ho et al.", "2020", "Ho. DDPM.", "b.html#id1"),
                   "song2021sde": c.Citation("song2021sde", "Song et al.", "2021", "Song. SDE.", "b.html#id2")})
    glue = {"n": {"text/plain": "0.123456"}, "m": {"text/markdown": "$10^{4}$"}}
    conv = c.Converter("chapters/04_x", index, glue, {"sec-a": "The $x_0$ section"})
    src = "\n".join([
        "(sec-a)=", "## The $x_0$ section", "% a comment",
        "Value {glue:text}`n:.2f`, {glue:text}`n`, md {glue:md}`m:myst`; see {eq}`eq-a`, {eq}`eq-b`,",
        "{ref}`sec-a`, {ref}`that one <sec-a>`, {cite:p}`ho2020ddpm,song2021sde`, {cite:t}`ho2020ddpm`.",
        "", "$$", "a = b", "$$ (eq-a)", "",
        "```{admonition} Running this notebook", ":class: tip", "Fast.", "$$", "c", "$$", "```", "",
        "````{admonition} Solution", ":class: dropdown", "Easy.", "```python", "x = {1: 2}", "```", "````",
    ])
    out = conv.convert(src)
    assert "(sec-a)=" not in out and "% a comment" not in out
    assert "Value 0.12, 0.123456, md $10^{4}$; see (4.1), [(3.2)](" in out
    assert "chapters/03_y.html#equation-eq-b)" in out
    assert "The $x_0$ section, that one, (Ho et al., 2020; Song et al., 2021), Ho et al. (2020)." in out
    assert "$$\na = b\n\\tag{4.1}\n$$" in out
    assert "> **Running this notebook**\n>\n> Fast.\n> $$c$$" in out
    assert "<details>\n<summary><b>Solution</b></summary>\n\nEasy.\n```python\nx = {1: 2}\n```\n\n</details>" in out
    assert conv.cited == ["ho2020ddpm", "song2021sde"]
    for bad in ("{sub-ref}`x`", "```{figure} a.png\n```", "{glue:text}`missing`", "{eq}`nope`"):
        with pytest.raises(c.EditionError):
            c.Converter("chapters/04_x", index, glue, {}).convert(bad)
