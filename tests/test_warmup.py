"""The CLI's warm-up helpers: background imports and the BLAS thread limit (no timings)."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("CLV_FORECAST_NO_WARMUP", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)


def test_start_imports_the_fit_modules_in_a_daemon_thread_once():
    code = ("import sys\nfrom clv_forecast import _warmup\n"
            "t = _warmup.start()\nassert t.daemon and _warmup.start() is t\nt.join(60)\n"
            "missing = [m for m in _warmup.MODULES if m not in sys.modules]\nassert not missing, missing\n"
            "print('ok')")
    assert _run(code).stdout.strip() == "ok"


def test_start_can_be_switched_off():
    code = "from clv_forecast import _warmup\nassert _warmup.start() is None\nprint('off')"
    assert _run(code, CLV_FORECAST_NO_WARMUP="1").stdout.strip() == "off"


def test_failing_imports_are_swallowed_and_exit_is_clean():
    code = ("from clv_forecast import _warmup\n"
            "t = _warmup.start(('no_such_module_xyz', 'scipy.optimize'))\n"
            "print('started')")  # exits while the thread may still be importing
    result = _run(code)
    assert result.stdout.strip() == "started" and result.returncode == 0 and "Traceback" not in result.stderr


def test_limit_blas_threads_sets_defaults_before_numpy_only():
    code = ("import os\nfrom clv_forecast import _warmup\n"
            "assert _warmup.limit_blas_threads()\nassert os.environ['OPENBLAS_NUM_THREADS'] == '1'\n"
            "import numpy\nassert not _warmup.limit_blas_threads()\nprint('ok')")
    assert _run(code).stdout.strip() == "ok"
    kept = "import os\nfrom clv_forecast import _warmup\n_warmup.limit_blas_threads()\nprint(os.environ['OPENBLAS_NUM_THREADS'])"
    assert _run(kept, OPENBLAS_NUM_THREADS="2").stdout.strip() == "2"  # the user's choice wins


def test_fit_results_do_not_depend_on_the_warm_up(tmp_path):
    from clv_forecast.simulate import simulate

    path = tmp_path / "tx.csv"
    tx = simulate(3000, r=0.24, alpha=4.4, a=0.79, b=2.4, p=6.25, q=3.74, v=15.44, seed=1)
    tx.rename(columns={"timestamp": "date"}).to_csv(path, index=False)
    code = ("import json, sys\nfrom clv_forecast.rfm import summarize\nfrom clv_forecast import _warmup\n"
            "_warmup.start()\n"
            f"rfm = summarize({str(path)!r}, amount_col='amount')\n"
            "from clv_forecast.model import ClvModel\nm = ClvModel().fit(rfm)\n"
            "print(json.dumps({k: {n: float(v) for n, v in d.items()} for k, d in m.params_.items()}))")
    warm = _run(code).stdout
    cold = _run(code, CLV_FORECAST_NO_WARMUP="1").stdout
    assert warm == cold and "bgnbd" in warm
