"""`tuner report`: a self-contained HTML file from a real (short) search's journal and profile, a partial
one from a journal still being written, and the page loaded in headless Chromium without errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def tuner(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def search(tmp_path_factory, nagle_fix_only):
    """A real search: rr over the one knob that fixes its Nagle trap (the knobs figure then has one panel;
    more knobs only add trials, simplification and confirmation rounds), its journal and its profile."""
    d = tmp_path_factory.mktemp("search")
    done = tuner(
        "recommend",
        "rr",
        *nagle_fix_only,
        "--budget",
        "2",
        "--duration",
        "0.1s",
        "--journal",
        str(d / "s.jsonl"),
        "-o",
        str(d / "p.toml"),
    )
    assert done.returncode == 0, done.stderr
    return d


@pytest.fixture(scope="module")
def report(search):
    """The report of that search (profile and journal), written once: the tests only read it."""
    out = search / "report.html"
    done = tuner("report", str(search / "p.toml"), "--journal", str(search / "s.jsonl"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def svgs(page: str) -> list[ET.Element]:
    """Every inline SVG, parsed as XML (a figure that does not decode fails here)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", page, re.S)]


def test_a_report_of_a_search_has_its_pictures_figures_and_no_external_resource(search, report):
    page = report.read_text()
    figures = svgs(page)
    assert len(figures) == 3  # convergence, before/after, knobs
    assert all(f.tag.endswith("svg") for f in figures)
    for heading in ("Search", "Before and after", "Knobs", "Context", "Apply it"):
        assert f"<h2>{heading}</h2>" in page
    from tuner.profiles import load_profile

    evidence = load_profile(search / "p.toml").evidence
    assert evidence["verdict"].split(" (")[0] in page.replace("&#x27;", "'")
    assert "latency_p99_ms" in page
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|url\((?!#)", page), (
        "the report must be self-contained"
    )


def test_a_journal_still_being_written_gives_a_partial_report(search, tmp_path):
    journal = tmp_path / "running.jsonl"
    lines = (search / "s.jsonl").read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # a line cut in the middle
    out = tmp_path / "partial.html"
    done = tuner("report", str(journal), "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "still running" in page and len(svgs(page)) >= 1


# Chromium's own background services (blocked here by the dead proxy, like everything else)
_BROWSER_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-logging=stderr",
    "--v=0",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]


def load_in_chromium(page: Path, tmp_path: Path) -> tuple[Path, str, list[str]]:
    """Screenshot, log, and the URLs the page asked for beyond the file itself (from Chromium's net log)."""
    shot, netlog = tmp_path / "page.png", tmp_path / "net.json"
    done = subprocess.run(
        [
            "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--log-net-log={netlog}",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text())) if netlog.exists() else set()
    wanted = [
        u
        for u in urls
        if not u.startswith(("file:", "data:"))
        and not (re.match(r"https?://([^/:]+)", u) or [None, ""])[1].endswith(_BROWSER_HOSTS)
    ]
    return shot, done.stdout + done.stderr, wanted


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (.ci/setup installs it)"
)
def test_the_report_loads_in_headless_chromium_without_errors(report, tmp_path):
    shot, log, wanted = load_in_chromium(report, tmp_path)
    assert shot.exists() and shot.stat().st_size > 20_000, log[-2000:]
    assert wanted == [], f"the page asked for {wanted}"
    assert "CONSOLE" not in log, log[-2000:]


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (.ci/setup installs it)"
)
def test_the_chromium_check_catches_a_missing_resource_and_a_console_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="http://example.invalid/x.png"><script>console.error("boom")</script>'
        "</body></html>"
    )
    _, log, wanted = load_in_chromium(page, tmp_path)
    assert wanted == ["http://example.invalid/x.png"]
    assert "CONSOLE" in log and "boom" in log
