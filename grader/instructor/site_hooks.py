"""MkDocs hooks (mkdocs.yml names this file): the manifest's navigation, each stage page's "What you write" block,
and the npm files the site serves. The logic is in grader/instructor/site.py; `mkdocs serve` and
`python -m grader site` build the same book."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mkdocs loads this file by path: make the workbook's packages importable
    sys.path.insert(0, str(ROOT))

from grader.instructor import site  # noqa: E402


def on_config(config):
    config["nav"] = site.navigation()
    config["extra"]["polyfills"] = list(site.POLYFILLS)  # before Material's offline plugin would add a CDN copy
    return config


def on_page_markdown(markdown, page, config, files):
    return site.page_markdown(markdown, page.file.src_uri)


def on_post_build(config):
    site.copy_vendored(Path(config["site_dir"]))
