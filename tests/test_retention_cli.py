"""``clv-forecast retention`` wired in: the model file (``--save-model``, one per cohort with ``--by-cohort``), the
unreliable fit (not written unless ``--save-unreliable``), the plot (``--plot``, :func:`plots.retention_curve`) and
interrupted writes. The data: Fader & Hardie (2007), Table 1, years 0-7 of the two segments, cohorts of 1,000
(shared/docs/reference-values.md, "sBG, contractual"); the fits themselves are tests/test_sbg.py's."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_forecast import plots
from clv_forecast.cli import main
from clv_forecast.estimators.retention._base import FORMAT, RetentionModel
from clv_forecast.estimators.retention.sbg import ShiftedBetaGeometricModel

REGULAR = [100, 63.1, 46.8, 38.2, 32.6, 28.9, 26.2, 24.1]
HIGH_END = [100, 86.9, 74.3, 65.3, 59.3, 55.1, 51.7, 49.1]
PNG = b"\x89PNG\r\n\x1a\n"


def _alive(percent):
    return [round(p * 10) for p in percent]


def _table(segments: dict) -> pd.DataFrame:
    rows = [(name, t, v) for name, alive in segments.items() for t, v in enumerate(alive)]
    return pd.DataFrame(rows, columns=["cohort", "period", "alive"])


@pytest.fixture
def paper_csv(tmp_path):
    path = tmp_path / "segments.csv"
    _table({"regular": _alive(REGULAR), "high end": _alive(HIGH_END)}).to_csv(path, index=False)
    return path


@pytest.fixture
def flat_csv(tmp_path):
    """A constant retention rate: no heterogeneity, the sBG fit runs off to the geometric model (unreliable)."""
    path = tmp_path / "flat.csv"
    _table({"flat": list(np.round(1e6 * 0.8 ** np.arange(8)))}).to_csv(path, index=False)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _run_json(capsys, args, code=0):
    assert main([*args, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def _error(capsys, args, code=2):
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# ---- --save-model ---------------------------------------------------------------------------------------------


def test_save_model_writes_the_fit_that_load_and_score_read(paper_csv, tmp_path, capsys):
    target = tmp_path / "models" / "sbg.json"
    out = _run_json(capsys, ["retention", "--cohorts", str(paper_csv), "--period", "Y", "--save-model", str(target)])
    assert out["model_paths"] == {"pooled": str(target)}
    doc = json.loads(target.read_text())
    assert doc["format"] == FORMAT and doc["kind"] == "sbg" and doc["time_unit"] == "Y" and doc["problems"] == []
    loaded = RetentionModel.load(target)
    fit = out["fits"][0]
    assert (loaded.params_["alpha"], loaded.params_["beta"]) == (fit["alpha"], fit["beta"])
    # the pooled fit of both segments, as the model fits it directly
    direct = ShiftedBetaGeometricModel().fit(pd.read_csv(paper_csv, dtype={"cohort": str}), time_unit="Y")
    np.testing.assert_allclose(loaded.params_, direct.params_, rtol=1e-12)
    np.testing.assert_array_equal(loaded.result_.cov, direct.result_.cov)
    assert _files(target.parent) == ["sbg.json"]  # no temporary file
    # the text report says where it went
    assert main(["retention", "--cohorts", str(paper_csv), "--period", "Y", "--save-model", str(target)]) == 0
    assert f"model saved to {target}" in capsys.readouterr().out


def test_by_cohort_writes_one_model_file_per_cohort(paper_csv, tmp_path, capsys):
    template = tmp_path / "sbg-{cohort}.json"
    out = _run_json(capsys, ["retention", "--cohorts", str(paper_csv), "--period", "Y", "--by-cohort",
                             "--save-model", str(template)])
    paths = {"regular": tmp_path / "sbg-regular.json", "high end": tmp_path / "sbg-high_end.json"}
    assert out["model_paths"] == {k: str(v) for k, v in paths.items()}
    for label, percent in (("regular", REGULAR), ("high end", HIGH_END)):
        own = ShiftedBetaGeometricModel().fit(_alive(percent), time_unit="Y")
        np.testing.assert_allclose(RetentionModel.load(paths[label]).params_, own.params_, rtol=1e-12)
    assert _files(tmp_path) == ["sbg-high_end.json", "sbg-regular.json", "segments.csv"]


def test_model_file_names_that_would_collide_are_refused_before_any_fit(tmp_path, capsys):
    table = tmp_path / "c.csv"
    _table({"a b": _alive(REGULAR), "a/b": _alive(HIGH_END)}).to_csv(table, index=False)
    err = _error(capsys, ["retention", "--cohorts", str(table), "--period", "Y", "--by-cohort", "--save-model",
                          str(tmp_path / "m-{cohort}.json")])
    assert "cohorts 'a b' and 'a/b' would both be saved as" in err and "m-a_b.json" in err
    assert _files(tmp_path) == ["c.csv"]


@pytest.mark.parametrize("args, fragment", [
    (["--save-model", "{tmp}/m.json", "--by-cohort"], "--save-model {tmp}/m.json: with --by-cohort each cohort's "
                                                      "model is its own file: put {{cohort}} in the path"),
    (["--save-model", "{tmp}/m-{{cohort}}.json"], "{{cohort}} names one file per cohort: it needs --by-cohort"),
    (["--save-model", "{table}"], "--save-model and --cohorts are the same file"),
    (["--save-model", "{tmp}/p.csv", "--output", "{tmp}/p.csv"], "are the same file"),
    (["--save-model", "{tmp}/models"], "{tmp}/models: is a directory; give a file path for the model"),
    (["--plot", "{tmp}/curve.jpg"], "--plot: {tmp}/curve.jpg: the plot is a PNG image; give a path ending in .png"),
    (["--plot", "{table}"], "--plot and --cohorts are the same file"),
])
def test_bad_output_paths_are_one_line_before_any_work(paper_csv, tmp_path, capsys, args, fragment):
    (tmp_path / "models").mkdir()
    values = {"tmp": str(tmp_path), "table": str(paper_csv)}
    args = [a.format(**values) for a in args]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    err = _error(capsys, ["retention", "--cohorts", str(paper_csv), "--period", "Y", *args])
    assert fragment.format(**values) in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing (re)written
    assert list((tmp_path / "models").iterdir()) == []


# ---- an unreliable fit ------------------------------------------------------------------------------------------


def test_an_unreliable_fit_writes_nothing_and_exits_3(flat_csv, tmp_path, capsys):
    model, plot, table = tmp_path / "m.json", tmp_path / "c.png", tmp_path / "p.csv"
    assert main(["retention", "--cohorts", str(flat_csv), "--period", "Y", "--save-model", str(model), "--plot",
                 str(plot), "--output", str(table)]) == 3
    captured = capsys.readouterr()
    assert "warning: unreliable fit" in captured.out and captured.err.count("\n") == 1
    assert "the projection, the model and the plot were not written (--save-unreliable writes them" in captured.err
    assert _files(tmp_path) == ["flat.csv"]


def test_save_unreliable_writes_the_model_labelled_and_score_refuses_it_unless_allowed(flat_csv, tmp_path, capsys):
    model, plot = tmp_path / "m.json", tmp_path / "c.png"
    out = _run_json(capsys, ["retention", "--cohorts", str(flat_csv), "--period", "Y", "--save-model", str(model),
                             "--plot", str(plot), "--save-unreliable"])
    assert out["reliable"] is False and out["model_paths"] == {"pooled": str(model)} and out["plot"] == str(plot)
    loaded = RetentionModel.load(model)
    assert loaded.problems_ == out["fits"][0]["problems"] and "geometric model" in loaded.problems_[0]
    customers = tmp_path / "customers.csv"
    pd.DataFrame({"customer_id": [1, 2], "renewals": [0, 3]}).to_csv(customers, index=False)
    scores = tmp_path / "s.csv"
    err = _error(capsys, ["score", "--model", str(model), "--input", str(customers), "--output", str(scores)])
    assert "the model is not reliable" in err and "--allow-unreliable" in err and not scores.exists()
    assert main(["score", "--model", str(model), "--input", str(customers), "--output", str(scores),
                 "--allow-unreliable"]) == 0
    assert "clv-forecast: warning: " in capsys.readouterr().err  # (one line: scoring with an unreliable model)
    # every customer has the same churn probability: p_renew is the constant retention rate 0.8
    np.testing.assert_allclose(pd.read_csv(scores)["p_renew"], 0.8, rtol=1e-6)


def test_by_cohort_writes_the_reliable_cohorts_only(paper_csv, flat_csv, tmp_path, capsys):
    mixed = tmp_path / "mixed.csv"
    pd.concat([pd.read_csv(paper_csv), pd.read_csv(flat_csv)]).to_csv(mixed, index=False)
    assert main(["retention", "--cohorts", str(mixed), "--period", "Y", "--by-cohort", "--save-model",
                 str(tmp_path / "m-{cohort}.json"), "--plot", str(tmp_path / "c.png")]) == 0
    text = capsys.readouterr().out
    assert "cohort flat: not written (unreliable fit; --save-unreliable writes it)" in text
    assert _files(tmp_path) == ["c.png", "flat.csv", "m-high_end.json", "m-regular.json", "mixed.csv",
                                "segments.csv"]


# ---- interrupted writes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["write_text", "write_bytes"])
def test_an_interrupted_write_leaves_no_half_written_file(paper_csv, tmp_path, capsys, monkeypatch, method):
    """Ctrl-C while the model file (write_text) or the plot (write_bytes, after the model) is half written: exit
    130; the file under its name is the old one (or none), no temporary file is left; a file written before the
    interrupt is whole."""
    model, plot = tmp_path / "m.json", tmp_path / "c.png"
    model.write_text("old model\n")
    real = getattr(Path, method)

    def half_then_interrupt(self, data, *args, **kwargs):
        if self.name.startswith("."):  # a temporary file of the atomic write
            real(self, data[:len(data) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, method, half_then_interrupt)
    rc = main(["retention", "--cohorts", str(paper_csv), "--period", "Y", "--save-model", str(model), "--plot",
               str(plot)])
    assert rc == 130 and "aborted" in capsys.readouterr().err
    if method == "write_text":
        assert model.read_text() == "old model\n"
    else:
        assert RetentionModel.load(model).params_["alpha"] > 0  # written whole before the plot
    assert _files(tmp_path) == ["m.json", "segments.csv"]


# ---- the plot ---------------------------------------------------------------------------------------------------


def test_plot_is_a_png_of_the_curve(paper_csv, tmp_path, capsys):
    from matplotlib.image import imread

    plot = tmp_path / "curve.png"
    out = _run_json(capsys, ["retention", "--cohorts", str(paper_csv), "--period", "Y", "--plot", str(plot)])
    data = plot.read_bytes()
    assert out["plot"] == str(plot) and data[:8] == PNG and len(data) > 20_000
    assert struct.unpack(">II", data[16:24]) == (1000, 460)
    image = imread(plot)
    assert image[..., :3].std() > 0.05  # not a blank image


def _artist(fig, gid, count=1):
    found = [a for ax in fig.axes for a in ax.get_children() if getattr(a, "get_gid", lambda: None)() == gid]
    assert len(found) == count, gid
    return found[0]


def test_retention_curve_draws_the_model_and_the_data():
    model = ShiftedBetaGeometricModel().fit(_alive(REGULAR), time_unit="Y")
    fig = plots.retention_curve(model, periods=12)
    assert "sBG" in fig._suptitle.get_text() and "unreliable" not in fig._suptitle.get_text()
    share = _artist(fig, "projected share")
    np.testing.assert_allclose(share.get_xdata(), np.arange(13))
    np.testing.assert_allclose(share.get_ydata(), 100 * model.survival(np.arange(13)), rtol=1e-12)
    actual = _artist(fig, "actual share").get_offsets()
    np.testing.assert_allclose(actual[:, 1], np.array(_alive(REGULAR)) / 10, rtol=1e-12)  # % of 1,000
    rate = _artist(fig, "projected retention")
    np.testing.assert_allclose(rate.get_ydata(), 100 * model.retention_rate(np.arange(1, 13)), rtol=1e-12)
    observed = _artist(fig, "actual retention").get_offsets()
    alive = np.array(_alive(REGULAR), dtype=float)
    np.testing.assert_allclose(observed[:, 1], 100 * alive[1:] / alive[:-1], rtol=1e-12)
    assert _artist(fig, "last observed period", count=2).get_xdata()[0] == 7  # one per panel


def test_retention_curve_of_several_cohorts_and_of_a_loaded_model(tmp_path):
    fits = {name: ShiftedBetaGeometricModel().fit(_alive(p), time_unit="Y")
            for name, p in (("regular", REGULAR), ("high end", HIGH_END))}
    fig = plots.retention_curve(fits)
    for name, model in fits.items():
        line = _artist(fig, f"projected share {name}")
        assert line.get_label() == f"{name}: sBG projected"
        np.testing.assert_allclose(line.get_ydata(), 100 * model.survival(np.arange(13)), rtol=1e-12)
    loaded = RetentionModel.load(fits["regular"].save(tmp_path / "m.json"))
    with pytest.raises(Exception, match="give a cohort table"):
        plots.retention_curve(loaded)
    fig = plots.retention_curve(loaded, data=_alive(REGULAR))
    np.testing.assert_allclose(_artist(fig, "actual share").get_offsets()[:, 1], np.array(_alive(REGULAR)) / 10)
    with pytest.raises(Exception, match="give a fitted retention model"):
        plots.retention_curve("model.json")
