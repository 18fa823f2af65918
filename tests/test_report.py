"""The HTML report: self-contained (no request leaves the file), every image decodes, it renders in a real
headless Chromium; and the run writes it."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pandas as pd
import pytest

from clv_forecast.cli import main
from clv_forecast.report import Figure, Section, render
from external_tools import chromium_path, require  # noqa: E402 (tests folder)

# Loaded into a copy of the report by the test only: counts the images that decoded and every resource the
# page requested (data: URIs excluded), and writes the result into the title, which --dump-dom prints.
_PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const requests = performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));
  document.title = 'PROBE' + JSON.stringify({images: imgs.length, decoded: decoded, requests: requests,
                                             tables: document.querySelectorAll('table').length,
                                             height: document.body.scrollHeight});
});</script>"""


def _png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (RGB, one colour), written by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x3e\x7c\xb1" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _chromium_probe(path: Path, tmp_path: Path) -> dict:
    """Opens ``path`` in headless Chromium (tests calling it are marked ``browser``: skipped without Chromium
    unless CI=true)."""
    require("browser")
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    cmd = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--proxy-server=127.0.0.1:9", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r"<title>PROBE(.*?)</title>", out.stdout)
    assert match, f"Chromium did not render the page: {out.stderr[-500:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


def _external_references(document: str) -> list[str]:
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", document)
    refs += re.findall(r"url\(([^)]+)\)", document)
    return [r for r in refs if not r.startswith(("data:", "#"))]


def test_render_is_self_contained_and_escapes_text():
    document = render("T <1>", "sub & title", [
        Section("numbers", [pd.DataFrame({"x": [1.5, 12345.678], "name": ["<b>", "ok"]}), "a & b",
                            Figure(_png(), "a figure")]),
    ])
    assert _external_references(document) == []
    assert "&lt;b&gt;" in document and "<b>" not in document.split("<style>")[0]
    assert "12,345.7" in document and "data:image/png;base64," in document
    assert "<script" not in document


@pytest.mark.browser
def test_report_renders_in_chromium_with_every_image_decoded(tmp_path):
    path = tmp_path / "r.html"
    path.write_text(render("report", "sub", [Section("figures", [[Figure(_png(), "one"), Figure(_png(8, 5), "two")],
                                                                 pd.DataFrame({"a": [1, 2]})])]))
    seen = _chromium_probe(path, tmp_path)
    assert seen["images"] == 2 and seen["decoded"] == 2
    assert seen["requests"] == [] and seen["tables"] == 1


@pytest.mark.browser
def test_default_run_writes_a_report_that_renders(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 0
    assert "report written to reports/cdnow.html" in capsys.readouterr().out
    path = tmp_path / "reports" / "cdnow.html"
    document = path.read_text(encoding="utf-8")
    assert _external_references(document) == []
    for fragment in ("Model: parameters and fit", "Holdout check", "1,882", "Top 10 customers by CLV", "-9,582.4"):
        assert fragment in document, fragment
    # the summary first: the totals with the band of the default 90 % interval, as the run's metrics give them
    assert document.index("<h2>Summary</h2>") < document.index("<h2>Data</h2>")
    summary = document[document.index("<h2>Summary</h2>"):document.index("<h2>Data</h2>")]
    for fragment in ("total CLV", "72,403.3", "90% lower", "66,448.8", "78,891.4", "total expected purchases"):
        assert fragment in summary, fragment
    # every forecast of the top customers with its interval, one unbroken text column each
    top = document[document.index("Top 10 customers by CLV"):]
    for q in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        assert f"{q} 90% interval" in top, q
    assert "clv_lower" not in top and top.count("\u00a0\u2013\u00a0") == 40
    seen = _chromium_probe(path, tmp_path)
    assert seen["requests"] == [] and seen["decoded"] == seen["images"] and seen["tables"] >= 3
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["cdnow.html"]  # atomic: no temporary file left


def test_report_path_must_be_html(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\nsource = "cdnow_sample"\namount_col = "amount"\n[output]\nreport = "r.pdf"\n')
    assert main(["run", "--experiment", str(spec)]) == 2
    assert "r.pdf" in capsys.readouterr().err


COMPARE = ["compare", "--amount-col", "amount", "--calibration-end", "1997-09-30"]
METRICS = {"mae", "rmse", "total_error_pct", "spearman", "top10_share", "top20_share", "gini"}


def test_compare_prints_the_backtest_and_json_names_every_metric(cdnow_csv, capsys):
    assert main([*COMPARE, "--transactions", str(cdnow_csv)]) == 0
    out = capsys.readouterr().out
    for method in ("predictive", "simple", "run_rate", "segment_average"):
        assert method in out
    assert main([*COMPARE, "--transactions", str(cdnow_csv), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["methods"]) >= {"predictive", "simple"}
    for metrics in data["methods"].values():
        assert set(metrics) == METRICS
    assert data["methods"]["predictive"]["rmse"] < data["methods"]["run_rate"]["rmse"]


@pytest.mark.browser
def test_compare_output_folder_holds_tables_plots_and_a_report_that_renders(cdnow_csv, tmp_path, capsys):
    folder = tmp_path / "results"
    assert main([*COMPARE, "--transactions", str(cdnow_csv), "--output", str(folder)]) == 0
    names = {p.name for p in folder.iterdir()}
    for table in ("backtest", "customers", "segments", "purchases_by_frequency"):
        assert {f"{table}.csv", f"{table}.parquet"} <= names
    backtest = pd.read_parquet(folder / "backtest.parquet")
    assert set(backtest.columns) >= METRICS and len(backtest) >= 5
    pngs = list((folder / "plots").glob("*.png"))
    assert len(pngs) >= 6 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    seen = _chromium_probe(folder / "report.html", tmp_path)
    assert seen["images"] == len(pngs) and seen["decoded"] == seen["images"] and seen["requests"] == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert main([*COMPARE, "--transactions", str(cdnow_csv), "--output", str(folder)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_compare_needs_a_holdout_and_money(cdnow_csv, capsys):
    assert main(["compare", "--transactions", str(cdnow_csv), "--amount-col", "amount"]) == 2
    assert "--calibration-end" in capsys.readouterr().err
    assert main(["compare", "--transactions", str(cdnow_csv), "--calibration-end", "1997-09-30"]) == 2
    assert "--amount-col" in capsys.readouterr().err


def test_report_command_writes_only_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--output", "out/r.html"]) == 0
    assert "report written to out/r.html" in capsys.readouterr().out
    document = (tmp_path / "out" / "r.html").read_text(encoding="utf-8")
    assert "Backtest: historical formulas vs the predictive model" in document and "Plots" in document
    assert not (tmp_path / "models").exists()  # the report command saves nothing else
