"""The HTML pages of `synthscan eval --html` and `synthscan report --html` in a real browser.

Opens the files as written (file://, the network cut off) in Debian's Chromium through
Playwright, as test_serve_page.py does, and honours ``SYNTHSCAN_REQUIRE_BROWSER`` the same way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import REPO, scanner
from test_serve_page import CHROMIUM_FLAGS, chromium

# A subset name that would be markup if the page did not escape it.
ODD = "<i>odd"
FILES = {
    "real": ["00.png", "01.jpg", "02.jpg", "03.jpg"],
    "fake": ["00.jpg", "01.jpg", "02.png", "03.webp"],
}


def labelled_set(root: Path) -> Path:
    for label, names in FILES.items():
        folder = root / ODD / label
        folder.mkdir(parents=True)
        for name in names:
            shutil.copy(REPO / "samples" / label / name, folder / name)
    return root


def open_page(html: Path) -> tuple[dict, list[str]]:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        context = browser.new_context(offline=True)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith("file:") else errors.append(r.url))
        page.goto(html.as_uri())
        seen = page.evaluate(
            """() => ({
                svgs: [...document.querySelectorAll('figure > svg')].map(s => {
                    const r = s.getBoundingClientRect();
                    return [r.width, r.height];
                }),
                sections: [...document.querySelectorAll('section')].map(s => s.id),
                tables: document.querySelectorAll('table').length,
                italics: document.querySelectorAll('i').length,
                text: document.body.innerText,
            })"""
        )
        browser.close()
    return seen, errors


def test_eval_and_report_pages_render_their_charts_offline(tmp_path: Path) -> None:
    chromium()
    root = labelled_set(tmp_path / "set")
    eval_html, report_html = tmp_path / "eval.html", tmp_path / "report.html"
    verdicts = tmp_path / "v.parquet"
    subprocess.run(
        [
            str(scanner()),
            "--quiet",
            "eval",
            str(root),
            "--html",
            str(eval_html),
            "--out",
            str(verdicts),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(scanner()), "report", str(verdicts), "--html", str(report_html)],
        check=True,
        capture_output=True,
    )

    seen, errors = open_page(eval_html)
    assert errors == []
    assert seen["sections"] == ["model-0", "format", "jpeg-quality", "size", "folder"]
    # Score histogram, ROC, precision-recall, then a bar chart per breakdown.
    assert len(seen["svgs"]) == 7
    assert all(w > 200 and h > 100 for w, h in seen["svgs"]), seen["svgs"]
    assert seen["tables"] == 6
    # The subset name is shown as text, not read as markup.
    assert seen["italics"] == 0
    assert ODD in seen["text"]
    assert "ROC-AUC" in seen["text"]

    seen, errors = open_page(report_html)
    assert errors == []
    assert seen["sections"] == ["summary", "scores", "format", "jpeg-quality", "size", "folder"]
    assert len(seen["svgs"]) == 5
    assert "combined verdict" in seen["text"]
