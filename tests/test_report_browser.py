"""The report opens in headless Chromium without console errors, and its figures show.

Needs Debian's ``chromium`` package (``apt-get install chromium``); skipped without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from reportdata import block_result

from stategrad.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)

# Flags for a headless run as root in a container, with nothing reaching the network.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
]

# Injected at the top of a copy of the report: records script errors and resources that
# fail to load, and once the page has loaded, whether every image decoded.
PROBE = """<script>(function(){
var errs=[];
window.addEventListener('error',function(e){var t=e.target;
 errs.push(t&&t!==window&&(t.src||t.href)?'resource failed: '+String(t.src||t.href).slice(0,80)
 :'error: '+e.message);},true);
window.addEventListener('load',function(){
 var imgs=[].slice.call(document.images);
 var p=document.createElement('pre');p.id='stategrad-probe';
 var cut=[].slice.call(document.querySelectorAll('table.kv,table.counts')).filter(function(t){
  return t.getBoundingClientRect().right>document.documentElement.clientWidth+1||t.closest('.scroll');});
 p.textContent=JSON.stringify({errors:errs,images:imgs.length,cut:cut.length,
  widths:imgs.map(function(i){return i.complete?i.naturalWidth:-1;})});
 document.body.appendChild(p);});
})();</script>"""


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    defs = {"all": "every word", "nouns": {"tags": ["NN", "NNS", "NNP", "NNPS"], "builtin": "ptb",
                                           "source": "/data/" + "penn-treebank-tags/" * 6 + "nouns.txt"},
            "verbs": {"words": [f"verb{i}" for i in range(40)], "source": "verbs.txt"}}
    a = block_result(D=12, H=8, E=4, seed=1, metadata={"class_definitions": defs})
    b = block_result(D=12, H=8, E=4, seed=2, metadata={"cell": "gru", "class_definitions": defs})
    # a long path in the metadata: the table must wrap it, not cut it off
    sources = ["/home/someone/experiments/" + "a-rather-long-folder-name/" * 8 + "lstm.h5", "gru.h5"]
    return build_report([a, b], out, normalize=np.eye(4) * 0.5, spectrum_delays=[0, 4],
                        sources=sources)


def test_probe_detects_errors(tmp_path):
    # The detector itself must see a broken page, or its silence means nothing.
    bad = tmp_path / "bad.html"
    bad.write_text("<html><head>" + PROBE + "</head><body><img src='missing.png'>"
                   "<script>console.error('boom'); undefined_function();</script></body></html>")
    run = _chromium(tmp_path, "--dump-dom", bad.as_uri())
    assert any("boom" in line for line in _console_lines(run.stderr)), run.stderr[-2000:]
    probe = json.loads(re.search(r'<pre id="stategrad-probe">(.*?)</pre>', run.stdout).group(1))
    assert any("undefined_function" in e for e in probe["errors"])
    assert any("missing.png" in e for e in probe["errors"])
    assert probe["widths"] == [0]


def test_report_opens_without_errors(report, tmp_path):
    page = report.read_text(encoding="utf-8")
    probed = report.with_name("probed.html")
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    run = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console_lines(run.stderr) == []
    match = re.search(r'<pre id="stategrad-probe">(.*?)</pre>', run.stdout)
    assert match, "the page never finished loading"
    probe = json.loads(match.group(1))
    assert probe["errors"] == []
    assert probe["cut"] == 0  # metadata and class tables shown whole, not in a scroll box
    assert probe["images"] == 8
    assert all(w > 100 for w in probe["widths"]), probe["widths"]
    # The unmodified report: no console output at all (it has no script).
    run = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert _console_lines(run.stderr) == []
    assert "Memory curves" in run.stdout


def test_screenshot_shows_the_figures(report, tmp_path):
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,3600", report.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3600, 1000)
    # Not a blank page: a good share of the page is ink.
    assert (pixels.min(axis=2) < 0.9).mean() > 0.03
    # Curves drawn in the Okabe-Ito vermillion (#D55E00) and the heat map's viridis are
    # nowhere in the page's own styling: seeing them means the figures rendered.
    vermillion = np.array([0xD5, 0x5E, 0x00]) / 255
    close = np.abs(pixels - vermillion).max(axis=2) < 0.08
    assert close.sum() > 200
    rows = np.flatnonzero(close.any(axis=1))
    assert rows.min() > 300  # below the run tables, where the first figure sits
    shutil.copy(shot, report.with_name("screenshot.png"))
