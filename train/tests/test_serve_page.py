"""The `synthscan serve` page in a real browser: upload, rows, threshold, filter, CSV download.

Drives Debian's Chromium (``/usr/bin/chromium``, or ``SYNTHSCAN_CHROMIUM``) through Playwright
against a server on an ephemeral port, with two models loaded so the page compares
them. ``scripts/test`` installs Chromium and sets ``SYNTHSCAN_REQUIRE_BROWSER=1``, so in CI a
missing browser fails the test instead of skipping it. ``SYNTHSCAN_SCREENSHOT=PATH`` saves the
results page there (README's screenshot is made that way).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, scanner

# The default and the small test model, so that the page compares two models.
MODELS = [
    "--model",
    "efficientnet-lite0-gen",
    "--model",
    str(REPO / "tests" / "fixtures" / "tiny-cnn.json"),
]
SAMPLES = {
    "real-01.jpg": REPO / "samples" / "real" / "01.jpg",
    "fake-02.png": REPO / "samples" / "fake" / "02.png",
    "fake-03.webp": REPO / "samples" / "fake" / "03.webp",
}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = os.environ.get("SYNTHSCAN_CHROMIUM") or shutil.which("chromium") or ""
    if not Path(path).is_file():
        if os.environ.get("SYNTHSCAN_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required but not installed (apt-get install chromium)")
        pytest.skip("Chromium not installed")
    return path


@pytest.fixture
def server() -> Iterator[str]:
    proc = subprocess.Popen(
        [str(scanner()), "serve", "--bind", "127.0.0.1:0", *MODELS],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
            break
    assert url, "synthscan serve exited before listening"
    # Keep reading stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    yield url
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def scan_labels(folder: Path, out: Path) -> dict[str, str]:
    subprocess.run(
        [str(scanner()), "--quiet", "scan", str(folder), "--out", str(out), *MODELS],
        cwd=REPO,
        check=True,
    )
    with out.open() as f:
        return {Path(r["path"]).name: r["label"] for r in csv.DictReader(f)}


def test_upload_compare_threshold_and_download(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name, src in SAMPLES.items():
        shutil.copy(src, uploads / name)
    expected = scan_labels(uploads, tmp_path / "scan.csv")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        scans: list[str] = []
        page.on("request", lambda r: scans.append(r.url) if "/v1/scan" in r.url else None)
        page.goto(server)
        version = json.loads((REPO / "models" / "efficientnet-lite0-gen.json").read_text())
        expect(page.locator("#models")).to_contain_text(
            f"efficientnet-lite0-gen {version['version']}"
        )
        expect(page.locator("#models")).to_contain_text("tiny-cnn")

        page.set_input_files("#files", [str(uploads / n) for n in SAMPLES])
        rows = page.locator("#results tbody tr")
        expect(rows).to_have_count(3, timeout=60_000)
        expect(page.locator("#status")).to_contain_text("3 file(s) scored")

        shown = {
            rows.nth(i).locator("td.name").inner_text(): rows.nth(i).get_attribute("data-verdict")
            for i in range(3)
        }
        assert shown == expected
        # One bar per model and one for the combined score, each with its value.
        assert rows.first.locator(".scorebox").count() == 3
        assert rows.first.locator(".scorebox b").first.inner_text().startswith(("0.", "1."))

        if shot := os.environ.get("SYNTHSCAN_SCREENSHOT"):
            page.screenshot(path=shot, full_page=True)

        # The threshold relabels rows in the page, without scoring again.
        page.locator("#threshold").fill("0")
        expect(page.locator('#results tbody tr[data-verdict="fake"]')).to_have_count(3)
        page.locator("#threshold").fill("1")
        expect(page.locator('#results tbody tr[data-verdict="real"]')).to_have_count(3)
        assert len(scans) == 1

        page.locator("#filter").select_option("error")
        expect(rows).to_have_count(0)
        page.locator("#filter").select_option("all")
        expect(rows).to_have_count(3)

        with page.expect_download() as download:
            page.click("#download-csv")
        saved = tmp_path / "download.csv"
        download.value.save_as(saved)
        with saved.open() as f:
            downloaded = {r["path"]: r["label"] for r in csv.DictReader(f)}
        assert downloaded == expected
        browser.close()
