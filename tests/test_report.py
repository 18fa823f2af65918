"""The HTML report: self-contained (no request leaves the file), every image decodes, it renders in a real
headless Chromium; and the run writes it."""

from __future__ import annotations

import html
import json
import re
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
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
  const right = Math.max(0, ...[...document.querySelectorAll('img, .scroll, p, dl, h1, h2')].map(
    e => e.getBoundingClientRect().right));
  document.title = 'PROBE' + JSON.stringify({images: imgs.length, decoded: decoded, requests: requests,
                                             tables: document.querySelectorAll('table').length,
                                             height: document.body.scrollHeight,
                                             viewport: window.innerWidth,
                                             page_width: document.documentElement.scrollWidth,
                                             rightmost: right});
  if (window.parent !== window) window.parent.postMessage(document.title, '*');
});</script>"""

# A page that shows the probed report in a frame of a phone's width (headless Chromium does not make its window
# narrower than 500 px) and takes the frame's result as its own title.
_FRAME = """<!DOCTYPE html><html><head><title>frame</title></head><body style="margin:0">
<iframe src="probe.html" style="width:{width}px;height:2000px;border:0"></iframe>
<script>window.addEventListener('message', e => {{ document.title = e.data; }});</script></body></html>"""


def _png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (RGB, one colour), written by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x3e\x7c\xb1" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _chromium_probe(path: Path, tmp_path: Path, width: int | None = None) -> dict:
    """Opens ``path`` in headless Chromium (tests calling it are marked ``browser``: skipped without Chromium
    unless CI=true)."""
    require("browser")
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    cmd = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--proxy-server=127.0.0.1:9", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    if width is not None:  # the report in a frame of that width
        frame = tmp_path / "frame.html"
        frame.write_text(_FRAME.format(width=width), encoding="utf-8")
        cmd[-1] = frame.as_uri()
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
    # the summary first: the totals with the band of the default 90 % interval, as the run's metrics give them,
    # in one money format with the neutral unit (no currency given)
    headings = re.findall(r"<h2>(.*?)</h2>", document)
    assert headings[0] == "Summary" and "Data" in headings[1:]
    summary = document[document.index("<h2>Summary</h2>"):document.index("<h2>Data</h2>")]
    for fragment in ("Total CLV over the next 12 months (365 days): 72,403.34 money units",
                     "90% band 66,448.83 to 78,891.45", "Total expected purchases", "2,095.11",
                     "Customers: 2,357 with a CLV", "smallest error per customer (RMSE)"):
        assert fragment in summary, fragment
    # every forecast of the top customers with its interval, one unbroken text column each, labelled with units
    top = document[document.index("Top 10 customers by CLV"):]
    for label in ("P(alive)", "expected purchases", "expected spend per purchase (money units)",
                  "CLV (money units)"):
        assert f"<th class=\"\">{label} 90% interval</th>" in top, label
    assert "clv_lower" not in top and top.count("\u00a0\u2013\u00a0") == 40
    assert "13.1428" not in document and "52.1786" not in document  # durations printed readably
    seen = _chromium_probe(path, tmp_path)
    assert seen["requests"] == [] and seen["decoded"] == seen["images"] and seen["tables"] >= 3
    # at a phone's width the page does not scroll sideways: images shrink, wide tables scroll in their own box
    phone = _chromium_probe(path, tmp_path, width=390)
    assert phone["viewport"] == 390 and phone["decoded"] == phone["images"]
    assert phone["page_width"] <= phone["viewport"] and phone["rightmost"] <= phone["viewport"] + 0.5, phone
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
    assert "scored on the holdout of 39 weeks (273 days)" in out  # a duration as a person reads it
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


# --------------------------------------------------------------------------------------------
# a report that explains itself (issue 21): definitions, units, currency, footnotes; notebooks
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_run():
    """The default experiment run once in memory, with the comparison, the backtest and the plots."""
    from clv_forecast import experiment

    spec = experiment.cdnow_spec()
    spec["output"].update(model=None, predictions=None, report=None)
    return experiment.run(spec, save=False, analyse=True)


def _document(result, currency=None) -> str:
    from clv_forecast import experiment

    result.spec["data"]["currency"] = currency
    try:
        return experiment._report_document(result)
    finally:
        result.spec["data"]["currency"] = None


def _section(document: str, title: str) -> str:
    start = document.index(f"<h2>{title}")
    return document[start:document.index("</section>", start)]


class _Fragment(HTMLParser):
    """Checks that every element opened is closed in order (void elements aside) and collects the text."""

    VOID = {"img", "br", "meta", "hr", "input", "link"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.text, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parsed(fragment: str) -> _Fragment:
    parser = _Fragment()
    parser.feed(fragment)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return parser


def test_every_table_is_explained_next_to_it(cdnow_run):
    from clv_forecast.compare import HISTORICAL_METHODS, METHOD_DESCRIPTIONS, SEGMENT_CODES

    document = _document(cdnow_run)
    backtest = _section(document, "Backtest")
    headers = re.findall(r"<th[^>]*>(.*?)</th>", backtest)
    for raw in ("total_error_pct", "top10_share", "top20_share", "mae", "rmse"):
        assert raw not in headers, raw  # labelled, not raw identifiers
    for label in ("MAE (money units)", "RMSE (money units)", "total error", "revenue of top 10 %"):
        assert label in headers, label
    # every historical method shown is defined beside the table, in the words of compare.METHOD_DESCRIPTIONS
    for method in HISTORICAL_METHODS:
        assert f"<dt>{method}</dt><dd>{html.escape(METHOD_DESCRIPTIONS[method])}</dd>" in backtest, method
    # one format per kind: shares as percentages, money with two decimals
    simple = cdnow_run.backtest.metrics.loc["simple"]
    assert f"{100 * simple['top10_share']:.1f}\u00a0%" in backtest and f"{simple['rmse']:,.2f}" in backtest
    segments = _section(document, "Historical vs predictive CLV by segment")
    assert html.escape(SEGMENT_CODES) in segments and "R3F3" in segments
    # definitions sit beside the tables of the model, the customers and the backtest
    for title in ("Model: parameters and fit", "Backtest", "Customers on whom", "Top 10 customers"):
        assert '<dl class="defs">' in _section(document, title), title


def test_currency_labels_the_money(cdnow_run):
    from clv_forecast.report import NEUTRAL_MONEY

    neutral, euros, symbol = (re.sub(r'src="data:[^"]*"', "", _document(cdnow_run, c)) for c in (None, "EUR", "<€>"))
    assert "CLV (money units)" in neutral and "EUR" not in neutral
    assert "CLV (EUR)" in euros and "72,403.34 EUR" in euros and NEUTRAL_MONEY not in euros
    assert "CLV (&lt;€&gt;)" in symbol and "<€>" not in symbol  # a user's text is escaped


def test_currency_is_checked_as_an_option_and_as_a_key(tmp_path, cdnow_csv, capsys):
    from clv_forecast.errors import ClvInputError
    from clv_forecast.experiment import load_spec

    assert main([*COMPARE, "--transactions", str(cdnow_csv), "--currency", "a very long currency"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--currency" in err and "Traceback" not in err
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\nsource = "x.csv"\ncurrency = " "\n')
    with pytest.raises(ClvInputError, match=r"\[data\] currency"):
        load_spec(spec)
    spec.write_text('[data]\nsource = "x.csv"\ncurrency = "€"\n')
    assert load_spec(spec)["data"]["currency"] == "€"


def test_p_alive_footnote_comes_from_the_model_and_only_when_shown(cdnow_run):
    from clv_forecast.report import _p_alive_note

    model = cdnow_run.model
    why = type(model.purchases_).p_alive_without_repeat
    assert why and model.purchases_.name not in why  # the model's own words; the report adds its name
    segments = _section(_document(cdnow_run), "Historical vs predictive CLV by segment")
    assert cdnow_run.comparison.segments.loc["one-time", "p_alive"] == pytest.approx(1.0)
    assert html.escape(f"{model.purchases_.name}: {why}.") in segments
    assert "P(alive) = 1 for the customers without a repeat purchase" in segments
    top = _section(_document(cdnow_run), "Top 10 customers")
    assert "P(alive) = 1" not in top  # no one-time buyer among the top customers: no footnote
    assert _p_alive_note(model, []) is None and _p_alive_note(model, [0.4, 0.9]) is None


def test_a_model_whose_one_time_buyers_may_have_left_gets_no_footnote(cdnow_run):
    from clv_forecast import ClvModel
    from clv_forecast.report import _p_alive_note

    mbg = ClvModel(purchases="mbgnbd").fit(cdnow_run.summary)
    one_time = cdnow_run.summary[cdnow_run.summary["frequency"] == 0]
    p = mbg.purchases_.p_alive(one_time)
    assert float(np.max(p)) < 1  # the model lets customers drop out at their first purchase
    assert _p_alive_note(mbg, p) is None


def test_the_boundary_note_says_each_thing_once():
    import warnings

    from clv_forecast import ClvModel, summarize
    from clv_forecast.report import boundary_note
    from clv_forecast.simulate import simulate

    log = simulate(2000, r=0.8, alpha=5.0, a=1e-6, b=1e3, p=6, q=4, v=15, seed=1, end="2021-06-30")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rfm = summarize(log, customer_col="customer_id", date_col="timestamp", amount_col="amount",
                        time_unit="W", calibration_end="2021-03-31")
        model = ClvModel().fit(rfm)
    assert model.purchases_.kind == "nbd"
    text = boundary_note(model).text
    assert text.startswith(model.boundary_line())
    assert text.count(model.boundary_["boundary"]) == 1  # the diagnosis once
    for name, value in model.purchases_.params_.items():  # the fitted parameters once
        assert text.count(f"{name} = {value:.4g}") == 1, name
    assert "reached a = " in text  # what the requested fit reached, from its diagnosis


def test_durations_are_readable():
    from clv_forecast.units import Duration, Rate, readable_duration

    assert readable_duration("13.1428571428571W") == "13.1 weeks (92 days)"
    assert readable_duration(39.0, "W") == "39 weeks (273 days)"
    assert Duration.parse("12M").readable() == "12 months (365 days)"
    assert readable_duration("1Y") == "1 year (365 days)" and readable_duration("30D") == "30 days"
    assert readable_duration(3, "2W") == "6 weeks (42 days)" and readable_duration("36h") == "36 hours (1.5 days)"
    assert Rate.parse("10%/Y").readable() == "10 % per year"


def test_model_and_estimators_show_their_summary_in_notebooks(cdnow_run):
    from clv_forecast import BetaGeoModel, ClvModel

    model = cdnow_run.model
    page = model._repr_html_()
    text = " ".join(_parsed(page).text)
    frame = model.summary_frame()
    for (_, param), row in frame.iterrows():  # the same table as summary(): every parameter and estimate
        assert param in text and f"{row['estimate']:.4g}" in text, param
    for _, sub in model.parts():
        assert sub.name in text
        own = " ".join(_parsed(sub._repr_html_()).text)
        assert all(p in own for p in sub.param_names) and "log-likelihood" in own
    assert "<script" not in page and "<style" not in page
    assert ClvModel()._repr_html_() is None and BetaGeoModel()._repr_html_() is None  # unfitted: the repr


def test_backtest_comparison_and_selection_show_the_report_tables(cdnow_run):
    from clv_forecast import ClvModel, compare

    backtest = cdnow_run.backtest
    page = backtest._repr_html_()
    parsed = _parsed(page)
    text = " ".join(parsed.text)
    for method in backtest.metrics.index:
        if method in compare.HISTORICAL_METHODS:
            assert method in text, method
    assert "predictive: " + cdnow_run.model.purchases_.name in text and "smallest error per customer" in text
    assert parsed.tags.count("table") == 2  # the scores and the purchases by frequency, as in the report
    report_backtest = _section(_document(cdnow_run), "Backtest")
    assert page[page.index("<table>"):page.index("</table>")] in report_backtest  # one renderer, the same table
    # escaping of user strings: segment names come from the user's data
    rfm = cdnow_run.summary
    names = np.where(rfm["frequency"] > 2, "<b>loyal</b>", "R&D")
    comparison = compare.side_by_side(cdnow_run.model, rfm, segments=pd.Series(names, index=rfm.index))
    shown = comparison._repr_html_()
    _parsed(shown)
    assert "&lt;b&gt;loyal&lt;/b&gt;" in shown and "<b>loyal" not in shown and "R&amp;D" in shown
    auto = ClvModel(purchases="auto").fit(rfm)
    chosen = " ".join(_parsed(auto.selection_._repr_html_()).text)
    assert "Model selection" in chosen and "Chosen:" in chosen
    assert all(name in chosen for name in auto.selection_.table["model"])


def test_plots_show_inline_in_a_notebook_without_pyplot(cdnow_run):
    from matplotlib.figure import Figure as MplFigure

    from clv_forecast import plots

    fig = plots.frequency_histogram(cdnow_run.model, cdnow_run.summary)
    assert isinstance(fig, MplFigure)
    png = fig._repr_png_()  # what IPython displays for a cell whose value is the figure
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (800, 500)
