"""Sphinx extension: a chapter's Colab launch button opens its Colab edition.

Jupyter Book builds the Colab link from the repository's source notebook on `repository.branch`
(`.../blob/main/chapters/04_elbo.ipynb`), whose prose is MyST that Colab shows as raw text. The
build also writes a Colab edition of every chapter into the HTML (scripts/colab_edition.py, run
by `make build`), and the HTML is published on the `launch_buttons.colab_edition_branch` branch
(GitHub Pages, .github/workflows/publish.yml). This extension points each chapter's Colab button
at that edition:

    https://colab.research.google.com/github/<org>/<repo>/blob/gh-pages/colab/04_elbo.ipynb

Settings (in `_config.yml`, section `launch_buttons`): `colab_edition_branch` (default
``gh-pages``) and `colab_edition_dir` (default ``colab``, a folder of the HTML root). The other
buttons (repository, issues, download) keep pointing at the source.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)


def edition_url(colab_url: str, repo_url: str, branch: str, folder: str, pagename: str) -> str:
    org, repo = repo_url.rstrip("/").removesuffix(".git").split("github.com/")[-1].split("/")[:2]
    name = PurePosixPath(pagename).name
    return f"{colab_url.rstrip('/')}/github/{org}/{repo}/blob/{branch}/{folder.strip('/')}/{name}.ipynb"


def point_colab_at_edition(app, pagename, templatename, context, doctree):
    """html-page-context, after sphinx-book-theme added its launch buttons (priority 501)."""
    if not pagename.startswith("chapters/"):
        return
    launch = app.config.html_theme_options.get("launch_buttons", {}) or {}
    repo_url = app.config.html_theme_options.get("repository_url", "")
    if not launch.get("colab_url") or "github.com/" not in repo_url:
        return
    url = edition_url(launch["colab_url"], repo_url, launch.get("colab_edition_branch", "gh-pages"),
                      launch.get("colab_edition_dir", "colab"), pagename)
    found = 0
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if button.get("text") == "Colab":
                button["url"] = url
                button["tooltip"] = "Open the Colab edition of this chapter"
                found += 1
    if not found:
        LOGGER.warning(f"{pagename}: no Colab launch button to point at the Colab edition",
                       type="colab_edition", subtype="button")


def setup(app):
    app.connect("html-page-context", point_colab_at_edition, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
