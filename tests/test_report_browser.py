"""report.html in a real browser: headless Chromium draws the answer first (skips where no
Chromium is installed: Debian's package ``chromium``)."""

import shutil
import subprocess

import numpy as np
import pytest

from evaluation.pages.report import write_report
from evaluation.schema import RunRecord
from tests.test_report_answer import ROWS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
# flags a closed network needs: without them Chromium's background connections stall its start
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    rows = [dict(r, profile_flops_per_call=172e6, profile_latency_median_ms=3.0) for r in ROWS]
    record = RunRecord.model_validate({"config": {"name": "Browser check"}, "git": {"commit": "abc"},
                                       "machine": {"platform": "test"}})
    return write_report(folder / "report.html", rows, record)


def test_the_browser_shows_the_answer_before_the_plots(report, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    answer = dom.index("The answer")
    assert answer < dom.index("<img")
    assert "int4: mean action change +32 % [+20, +41]" in dom[answer:dom.index("<img")]


def test_the_answer_box_is_drawn_at_the_top_of_the_page(report, tmp_path):
    from PIL import Image

    png = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1400,1200", f"--screenshot={png}", report.as_uri())
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1200, 1400)
    # the answer box's background (#f6f8fa) and its blue left border (#0969da) in the first screen
    box = np.all(np.abs(pixels - [0xF6, 0xF8, 0xFA]) <= 2, axis=-1)
    border = np.all(np.abs(pixels - [0x09, 0x69, 0xDA]) <= 8, axis=-1)
    rows_with_box = np.flatnonzero(box.sum(axis=1) > 600)
    assert len(rows_with_box) > 40 and rows_with_box[0] < 300
    assert border[rows_with_box].any()
    assert (pixels.sum(axis=-1) < 200).any()  # text was drawn
