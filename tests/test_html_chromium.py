"""report.html in headless Chromium: it renders (screenshot not blank) and makes no network request.

Chromium logs every URL request it starts (``--enable-logging=stderr --v=1``:
``NetworkDelegate::NotifyBeforeURLRequest: <url>``) and ``--host-resolver-rules`` keeps any
request from leaving the machine. The browser itself still asks a few Google services (time,
accounts, component updates) whatever the page holds; those hosts are ignored. A control page with
an external image and stylesheet proves the log does show the page's own requests.
"""
from __future__ import annotations

import os
import re
import subprocess
from urllib.parse import urlparse

import numpy as np
import pytest
from matplotlib.image import imread

from fake_analysis import make_analysis
from leakloc import report

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.chromium,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")]

#: the browser's own background services (not requested by the page)
BROWSER_HOSTS = re.compile(r"(^|\.)(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)$")
REQUEST = re.compile(r"NotifyBeforeURLRequest: (\S+)")


def _render(page, tmp_path, size="1200,2000"):
    shot = tmp_path / "shot.png"
    user = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={user}", "--enable-logging=stderr", "--v=1",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--screenshot={shot}", f"--window-size={size}",
           page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, errors="replace")
    assert shot.is_file(), proc.stderr[-2000:]
    urls = REQUEST.findall(proc.stderr + proc.stdout)
    page_urls = [u for u in urls
                 if urlparse(u).scheme not in ("file", "data", "chrome", "about")
                 and not BROWSER_HOSTS.search(urlparse(u).hostname or "")]
    return imread(str(shot)), page_urls


def test_control_page_requests_are_seen(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><h1>x</h1><img src="http://leakloc-canary.test/x.png">'
                    '<link rel="stylesheet" href="https://fonts.example.org/a.css"></body></html>')
    _img, urls = _render(page, tmp_path, size="400,300")
    assert "http://leakloc-canary.test/x.png" in urls
    assert "https://fonts.example.org/a.css" in urls


@pytest.mark.parametrize("leak", [True, False])
def test_report_html_renders_offline(tmp_path, leak):
    out = tmp_path / "out"
    report.write_outputs(make_analysis(leak=leak), out)
    img, urls = _render(out / "report.html", tmp_path)
    assert urls == []
    assert img.shape[0] >= 1900 and img.shape[1] >= 1100
    rgb = img[..., :3].astype(float)
    assert rgb.std() > 0.05  # not blank
    # the verdict banner (leak: red-tinted, no leak: green-tinted) is drawn near the top
    top = rgb[:300]
    if leak:
        assert np.any((top[..., 0] - top[..., 1] > 0.05) & (top[..., 0] > 0.9))
    else:
        assert np.any((top[..., 1] - top[..., 0] > 0.03) & (top[..., 1] > 0.9))
    # the figures are painted: some strongly coloured pixels further down
    sat = rgb.max(axis=-1) - rgb.min(axis=-1)
    assert (sat[600:] > 0.5).mean() > 0.01
