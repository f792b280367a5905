"""The book: its figures are up to date, and the built site works in a real browser opened from disk.

Figures: the cheap ones are recomputed here from solutions/ and compared with the data stored beside each PNG. The
trained-model ones (attention maps, sampling distributions, the explorers' data) are recomputed from the committed
checkpoint, docs/figures/model/model.npz; the training run itself is not repeated here (it takes minutes): its loss
curves (docs/figures/model/log.json) and every model-based data file are keyed by that checkpoint's sha256, and a
mismatch fails. `python -m grader figures` remakes them; `--run DIR` adopts a new training run.

Browser: `python -m grader site` builds the site once per session (a fixture), then headless Chromium (Debian's
chromium and chromium-driver, driven by selenium) opens every page from disk: no console error, no request that
leaves the disk, no broken internal link or anchor, every figure loaded, every formula rendered by KaTeX, search
working, and both explorers answering their controls with the reference's numbers. Without Chromium the browser
tests skip with the command that installs it (under CI they fail instead). BOOK_SCREENSHOTS=1 saves screenshots of a
stage page and both explorers into docs/screenshots/.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from grader import manifest
from grader.instructor import figures, site
from grader.manifest import ROOT
from grader.source import learner_writes

INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
SCREENSHOTS = ROOT / "docs" / "screenshots"


# ---------------------------------------------------------------------- figures and their data


def test_cheap_figures_are_recomputed_equal_to_their_stored_data():
    stale = figures.stale(model=False)
    assert not stale, "stale figures (run `python -m grader figures`):\n" + "\n".join(stale)


def test_model_figures_and_explorer_data_match_the_committed_checkpoint():
    """Recomputed from docs/figures/model/model.npz; the loss curves are not retrained, only keyed by its digest."""
    stale = figures.stale(model=True)
    assert not stale, "stale model data (run `python -m grader figures`):\n" + "\n".join(stale)
    digest = figures.sha256(figures.MODEL_DIR / "model.npz")
    for spec in (f for f in figures.REGISTRY if f.model):
        stored = json.loads(spec.data_file.read_text(encoding="utf-8"))
        assert stored["inputs"]["checkpoint_sha256"] == digest, f"{spec.name} was made from another checkpoint"
    for name in ("sampling", "attention"):
        assert figures.read_explorer(name)["checkpoint_sha256"] == digest, f"{name} explorer: another checkpoint"


def test_every_stage_shows_a_figure_and_every_figure_is_made_by_a_command():
    registered = {f"{spec.name}.png" for spec in figures.REGISTRY}
    on_disk = {path.name for path in figures.FIGURES.glob("*.png")}
    unknown = on_disk - registered - set(figures.MEASURED)
    assert not unknown, f"figures made by no command (register them in grader/instructor/figures.py, or in its " \
                        f"MEASURED with the command that measures them): {sorted(unknown)}"
    assert registered <= on_disk, f"missing (run `python -m grader figures`): {sorted(registered - on_disk)}"
    for stage in manifest.stages():
        page = (ROOT / stage.doc).read_text(encoding="utf-8")
        assert re.search(r"!\[[^\]]*\]\(figures/[^)]+\.png\)", page), f"{stage.doc} shows no figure"
        for name in (spec.name for spec in figures.REGISTRY if spec.stage == stage.id):
            assert f"](figures/{name}.png)" in page, f"{stage.doc} does not show figures/{name}.png: add " \
                                                     f"![{spec_caption(name)}](figures/{name}.png) where it belongs"


def spec_caption(name: str) -> str:
    return next(spec.caption for spec in figures.REGISTRY if spec.name == name)


def test_figure_data_round_trips_and_compares_within_tolerance():
    assert figures.rounded({"a": np.float32(0.1234567891), "b": [np.int64(3), 2.0e-9], "c": np.inf}) == \
        {"a": 0.123457, "b": [3, 2e-09], "c": float("inf")}
    assert figures.differences({"x": [1.0, 2.0]}, {"x": [1.00001, 2.0]}) == []  # within RTOL
    assert figures.differences({"x": [1.0, 2.0]}, {"x": [1.01, 2.0]}) == ["data.x[0]: stored 1.0, now 1.01"]


# ---------------------------------------------------------------------- what the build adds to the Markdown


@pytest.mark.parametrize("stage", manifest.stages(), ids=lambda s: s.id)
def test_what_you_write_lists_every_function_the_learner_writes(stage):
    text = site.signatures(stage)
    tree = ast.parse(text)  # valid Python: signatures and docstrings only
    defined = {f"{owner.name}.{node.name}" if owner is not tree else node.name
               for owner in [tree, *[n for n in tree.body if isinstance(n, ast.ClassDef)]]
               for node in owner.body if isinstance(node, ast.FunctionDef)}
    source = (ROOT / "solutions" / f"{stage.module}.py").read_text(encoding="utf-8")
    expected = {name for name in learner_writes(source) if ".<locals>." not in name}
    assert defined == expected


def test_stage_pages_get_the_section_before_their_first_heading_and_outside_links_become_paths():
    stage = manifest.stages()[0]
    page = stage.doc.removeprefix("docs/")
    markdown = "# T\n\nintro [manifest](../grader/stages.toml), [next](02-autograd.md)\n\n```\n## not a heading\n```\n" \
               "\n## 1. First\n"
    out = site.page_markdown(markdown, page)
    assert out.index("## What you write") < out.index("## 1. First") and out.index("## not a heading") < \
        out.index("## What you write")
    assert "manifest (`grader/stages.toml`)" in out and "[next](02-autograd.md)" in out
    assert site.page_markdown("[x](../10-train.md)", "explorers/sampling.md") == "[x](../10-train.md)"


def test_navigation_follows_the_manifest():
    nav = site.navigation()
    stages = next(entry["Stages"] for entry in nav if "Stages" in entry)
    assert [list(entry.values())[0] for entry in stages] == [s.doc.removeprefix("docs/") for s in manifest.stages()]


# ---------------------------------------------------------------------- the built site in a browser


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The site, built once by the README's command."""
    if shutil.which("npm") is None and not os.environ.get("CI"):
        pytest.skip("building the site needs npm (KaTeX comes from its npm package): apt-get install -y npm")
    out = tmp_path_factory.mktemp("book") / "site"
    done = subprocess.run([sys.executable, "-m", "grader", "site", "--out", str(out)], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, one per module; skipped (failed under CI) when it is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not chromium or not driver_path:
        message = f"the browser tests need Debian's Chromium and ChromeDriver, and selenium: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)  # no Selenium Manager: no download
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, built: Path, page: str) -> list[dict]:
    """Open `page` of the built site from disk; the console messages that came before and while it loaded."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get((built / page).as_uri())
    driver.execute_script("return document.readyState")
    return driver.get_log("browser")


PAGE_CHECKS = """
const content = document.querySelector('article') || document.body;
const clone = content.cloneNode(true);
clone.querySelectorAll('pre, code, .katex, script').forEach(e => e.remove());
const math = [...document.querySelectorAll('.arithmatex')];
return {
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  resources: performance.getEntriesByType('resource').map(e => e.name),
  images: [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
  math: math.length,
  rendered: math.filter(e => e.querySelector('.katex')).length,
  katex: document.querySelectorAll('.katex').length,
  katexErrors: [...document.querySelectorAll('.katex-error')].map(e => e.title || e.textContent),
  rawMath: (clone.textContent.match(/\\$\\$|\\\\\\[|\\\\\\(/g) || []).length,
  duplicateIds: [...document.querySelectorAll('[id]')].map(e => e.id).filter((id, i, all) => all.indexOf(id) !== i),
};
"""


def page_problems(driver, root: Path, page: str, texts: dict[Path, str]) -> tuple[list[str], dict]:
    """Open root/page from disk; what is wrong with it (console errors and warnings, requests that leave the disk,
    ids used twice, images that did not load, math left unrendered, links to missing files or anchors), and the
    page's own facts (PAGE_CHECKS)."""
    console = open_page(driver, root, page)
    problems = [f"{page}: console {entry['level']}: {entry['message']}" for entry in console
                if entry["level"] in ("SEVERE", "WARNING")]
    found = driver.execute_script(PAGE_CHECKS)
    problems += [f"{page}: loaded from outside the disk: {url}" for url in found["resources"]
                 if not url.startswith(("file:", "data:", "blob:"))]
    problems += [f"{page}: the id {name!r} is used twice" for name in found["duplicateIds"]]
    problems += [f"{page}: image {src} did not load" for src, complete, width in found["images"]
                 if not complete or width == 0]
    if found["rendered"] != found["math"] or found["katexErrors"] or found["rawMath"]:
        problems.append(f"{page}: {found['rendered']} of {found['math']} formulas rendered, KaTeX errors "
                        f"{found['katexErrors'][:3]}, {found['rawMath']} raw $$ or \\[ left in the text")
    for link in found["links"]:
        url = urlparse(link)
        if url.scheme != "file":
            continue
        target = Path(unquote(url.path))
        if not target.is_file():
            problems.append(f"{page}: broken link {link}")
        elif url.fragment and target.suffix == ".html":
            text = texts.setdefault(target, target.read_text(encoding="utf-8"))
            if f'id="{url.fragment}"' not in text:
                problems.append(f"{page}: link to a missing anchor {link}")
    return problems, found


def test_every_page_loads_from_disk_with_math_figures_and_working_links(built, browser):
    pages = sorted(p.relative_to(built).as_posix() for p in built.rglob("*.html") if p.name != "404.html")
    assert len(pages) >= len(manifest.stages()) + 3
    texts: dict[Path, str] = {}
    problems, facts = [], {}
    for page in pages:
        found_problems, facts[page] = page_problems(browser, built, page, texts)
        problems += found_problems
    assert not problems, "\n".join(problems[:40])
    for stage in manifest.stages():
        page = stage.doc.removeprefix("docs/").replace(".md", ".html")
        assert facts[page]["katex"] > 0, f"{page} shows no math: write at least its central formula as $$...$$ " \
                                         f"(KaTeX in the book; GitHub renders it too)"
        assert any(src.startswith("figures/") for src, _, _ in facts[page]["images"]), f"{page} shows no figure"


def test_the_page_checks_catch_what_they_look_for(tmp_path, browser):
    """A page with every fault the checks look for: each one is reported (so a green run means something)."""
    (tmp_path / "bad.html").write_text(
        "<html><body><article><p>$$x^2$$ left raw</p><div class='arithmatex'>\\[y\\]</div>"
        "<img src='missing.png'><span id='twice'></span><span id='twice'></span>"
        "<a href='nowhere.html'>a</a><a href='bad.html#no-such-anchor'>b</a>"
        "<script>console.error('boom')</script></article></body></html>", encoding="utf-8")
    problems, _ = page_problems(browser, tmp_path, "bad.html", {})
    report = "\n".join(problems)
    for expected in ("console SEVERE", "'twice' is used twice", "image missing.png did not load",
                     "0 of 1 formulas rendered", "broken link", "missing anchor"):
        assert expected in report, f"not caught: {expected}\n{report}"


def test_search_works_from_disk(built, browser):
    open_page(browser, built, "index.html")
    browser.execute_script("document.querySelector('label[for=__search]').click()")
    box = browser.find_element("css selector", "input.md-search__input")
    box.send_keys("perplexity")
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.querySelectorAll('.md-search-result__item').length") > 0)
    titles = browser.execute_script(
        "return [...document.querySelectorAll('.md-search-result__item h1, .md-search-result__item h2')]"
        ".map(e => e.textContent)")
    assert any("n-gram" in title for title in titles), titles


def set_control(driver, element_id: str, value) -> None:
    """Set a control's value as a user would, then fire the events a slider or a select fires."""
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                          "e.dispatchEvent(new Event('input', {bubbles: true}));"
                          "e.dispatchEvent(new Event('change', {bubbles: true}));", element_id, str(value))


def shown_distribution(driver) -> np.ndarray:
    rows = driver.execute_script("return [...document.querySelectorAll('#sampling-bars tr')]"
                                 ".map(r => [Number(r.dataset.token), Number(r.dataset.probability)])")
    probs = np.zeros(len(rows))
    for token, probability in rows:
        probs[token] = probability
    return probs


# (settings, what the control values are): each case one slider position or a combination, greedy included
SAMPLING_CASES = [
    {"temperature": 1.0}, {"temperature": 0.35}, {"temperature": 1.7}, {"temperature": 0.0},
    {"temperature": 1.0, "top_k": 5}, {"temperature": 0.8, "top_p": 0.62}, {"temperature": 1.2, "min_p": 0.15},
    {"temperature": 1.3, "top_k": 12, "top_p": 0.8, "min_p": 0.05}, {"temperature": 0.0, "top_k": 3, "top_p": 0.3},
]


def test_sampling_explorer_shows_the_references_filtered_distributions(built, browser):
    from selenium.webdriver.common.keys import Keys

    assert not [e for e in open_page(browser, built, "explorers/sampling.html") if e["level"] == "SEVERE"]
    data = figures.read_explorer("sampling")
    for prompt_index in (0, 4):
        set_control(browser, "sampling-prompt", prompt_index)
        logits = np.array(data["prompts"][prompt_index]["logits"])
        for case in SAMPLING_CASES:
            set_control(browser, "sampling-temperature", case["temperature"])
            set_control(browser, "sampling-top-k", case.get("top_k", 0))
            set_control(browser, "sampling-top-p", case.get("top_p", 1))
            set_control(browser, "sampling-min-p", case.get("min_p", 0))
            shown = shown_distribution(browser)
            reference = figures.filtered_probabilities(logits, **case)
            where = f"prompt {prompt_index}, {case}"
            assert np.array_equal(shown > 0, reference > 0), f"{where}: kept {np.flatnonzero(shown)}, reference " \
                                                             f"{np.flatnonzero(reference)}"
            # float64 in both; only the order of a sum differs (NumPy adds pairwise, JavaScript left to right)
            np.testing.assert_allclose(shown, reference, rtol=1e-12, atol=1e-15, err_msg=where)
            summary = browser.find_element("id", "sampling-summary").text
            assert summary.startswith(f"{int((reference > 0).sum())} of {len(reference)} tokens kept"), summary
    # the keyboard moves a slider as a person would: temperature 1.00 -> 0.50 in ten steps of 0.05
    set_control(browser, "sampling-top-k", 0), set_control(browser, "sampling-top-p", 1)
    set_control(browser, "sampling-min-p", 0), set_control(browser, "sampling-temperature", 1)
    browser.find_element("id", "sampling-temperature").send_keys(*[Keys.ARROW_LEFT] * 10)
    assert browser.find_element("id", "sampling-temperature-value").text == "0.50"
    logits = np.array(data["prompts"][4]["logits"])
    np.testing.assert_allclose(shown_distribution(browser), figures.filtered_probabilities(logits, temperature=0.5),
                               rtol=1e-12, atol=1e-15)


def test_sampling_explorer_keeps_ties_as_the_reference_does(built, browser):
    """Ties at every filter's boundary, on logits made for it: the JavaScript filters against filter_logits."""
    from solutions.generate import filter_logits

    open_page(browser, built, "explorers/sampling.html")
    rows = [[2.0, 2.0, 1.0, 1.0, 1.0, 0.0, -1.0, -1.0], [0.5, 3.0, 3.0, 3.0, 0.5, 0.5, -2.0, 1.0],
            [1.0] * 8, [np.log(0.4), np.log(0.2), np.log(0.2), np.log(0.1), np.log(0.1), -30.0, -30.0, -30.0]]
    cases = [{"temperature": 1.0, "top_k": 3}, {"temperature": 1.0, "top_k": 1}, {"temperature": 1.0, "top_p": 0.6},
             {"temperature": 1.0, "top_p": 0.5}, {"temperature": 0.7, "min_p": 0.5}, {"temperature": 0.0},
             {"temperature": 2.0, "top_k": 4, "top_p": 0.9, "min_p": 0.2}]
    for row in rows:
        for case in cases:
            script = ("return window.samplingExplorer.filterLogits(arguments[0], {temperature: arguments[1], "
                      "topK: arguments[2], topP: arguments[3], minP: arguments[4]}).map(x => x === -Infinity ? null : x)")
            shown = browser.execute_script(script, row, case["temperature"], case.get("top_k"), case.get("top_p"),
                                           case.get("min_p"))
            reference = filter_logits(np.array(row), **case)
            shown = np.array([-np.inf if x is None else x for x in shown])
            assert np.array_equal(np.isinf(shown), np.isinf(reference)), f"{row}, {case}: {shown} vs {reference}"
            np.testing.assert_allclose(shown[np.isfinite(shown)], reference[np.isfinite(reference)], rtol=1e-15)


def test_attention_explorer_shows_the_heads_weights(built, browser):
    assert not [e for e in open_page(browser, built, "explorers/attention.html") if e["level"] == "SEVERE"]
    model, tokenizer = figures.load_model()
    weights = figures.attention_weights(model, tokenizer.encode(figures.ATTENTION_LINE))  # (L, H, T, T)
    for layer, head, query in ((0, 0, 48), (2, 1, 20), (3, 3, 9)):
        set_control(browser, "attention-layer", layer)
        set_control(browser, "attention-head", head)
        set_control(browser, "attention-query", query)
        shown = browser.execute_script("return [...document.querySelectorAll('#attention-line span')]"
                                       ".map(s => Number(s.dataset.weight))")
        expected = np.zeros(weights.shape[-1])
        expected[:query + 1] = weights[layer, head, query, :query + 1]
        # the explorer stores 4 decimals
        np.testing.assert_allclose(shown, expected, atol=5e-5 + 1e-6, err_msg=f"layer {layer} head {head} q {query}")
        summary = browser.find_element("id", "attention-summary").text
        assert summary.startswith(f"query {query} "), summary
    browser.find_elements("css selector", "#attention-line span")[5].click()  # clicking a character picks it
    assert browser.find_element("id", "attention-query").get_attribute("value") == "5"
    assert browser.find_element("id", "attention-summary").text.startswith("query 5 ")


@pytest.mark.skipif(not os.environ.get("BOOK_SCREENSHOTS"), reason="BOOK_SCREENSHOTS=1 saves docs/screenshots/")
def test_save_screenshots(built, browser):
    SCREENSHOTS.mkdir(exist_ok=True)
    open_page(browser, built, "06-attention.html")
    browser.execute_script("document.querySelector('img[src*=\"06-attention-maps\"]').scrollIntoView()"
                           "; window.scrollBy(0, -120)")
    time.sleep(0.6)
    browser.save_screenshot(str(SCREENSHOTS / "stage-06-attention.png"))
    open_page(browser, built, "05-optim.html")
    browser.execute_script("document.getElementById('4-adam').scrollIntoView(); window.scrollBy(0, -60)")
    time.sleep(0.6)  # the header's title animates on scroll
    browser.save_screenshot(str(SCREENSHOTS / "stage-05-optim.png"))
    open_page(browser, built, "explorers/sampling.html")
    set_control(browser, "sampling-temperature", 0.8)
    set_control(browser, "sampling-top-p", 0.9)
    browser.find_element("id", "sampler").screenshot(str(SCREENSHOTS / "sampling-explorer.png"))
    open_page(browser, built, "explorers/attention.html")
    set_control(browser, "attention-layer", 2)
    set_control(browser, "attention-head", 1)
    set_control(browser, "attention-query", 40)
    browser.find_element("id", "attention-viewer").screenshot(str(SCREENSHOTS / "attention-explorer.png"))
