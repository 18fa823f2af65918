"""Write a realistic messy e-commerce export ("Online Retail" style) with a known ground truth.

The purchases come from :func:`clv_forecast.simulate.simulate` (BG/NBD + Gamma-Gamma), so the true
process is known; each purchase becomes an invoice of one to four item lines. Then the mess that real
exports have is injected, and counted:

* cancellations: invoices ``C<number>`` with negative ``Quantity`` that return part of an earlier
  invoice of the same customer (never all of it, so no purchase disappears);
* customers whose rows are only returns (their purchases predate the export);
* guest rows: ``CustomerID`` blank;
* exact duplicate lines (an item line written twice);
* ``CustomerID`` written as a float column (``13904.0``), as pandas writes an id column with gaps;
* ``InvoiceDate`` day-first with a time of day (``%d/%m/%Y %H:%M``);
* ``Description`` with non-ASCII characters (``é``, ``£``) and commas, the file encoded latin-1;
* variant ``semicolon``: ``;`` separators, decimal commas (``2,55``; ids ``13904,0``), cp1252.

Usage::

    python tests/make_retail_export.py OUT.csv [--customers 3000] [--seed 7] [--variant comma|semicolon]

prints the injected ground truth as JSON. From Python, :func:`make_retail_export` returns it as a
:class:`RetailTruth` (with the clean purchase log, one row per invoice, for comparisons).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clv_forecast.simulate import simulate  # noqa: E402

COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
DATE_FORMAT = "%d/%m/%Y %H:%M"
#: day-first ends: read month-first they would be 9 August / 1 December, other days
CALIBRATION_END = "08/09/2011"
OBSERVATION_END = "01/12/2011"
_START, _END = "2010-12-01", "2011-12-09 17:00"
_FIRST_ID = 12346
_PRODUCTS = [
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER"), ("71053", "WHITE MÉTAL LANTERN"),
    ("84406B", "CREAM CUPID HEARTS COAT HANGER"), ("22752", "SET 7 BABUSHKA NESTING BOXES"),
    ("21730", "GLASS STAR FROSTED T-LIGHT HOLDER"), ("22633", "HAND WARMER UNION JACK"),
    ("84879", "ASSORTED COLOUR BIRD ORNAMENT"), ("22745", "POPPY'S PLAYHOUSE BEDROOM"),
    ("21754", "HOME BUILDING BLOCK WORD"), ("22960", "JAM MAKING SET, WITH JARS"),
    ("22913", "RED COAT RACK PARIS FASHION"), ("22492", "MINI PAINT SET VINTAGE"),
    ("POST", "POSTAGE £"), ("21035", "SET/2 RED RETROSPOT TEA TOWELS"),
    ("22326", "ROUND SNACK BOXES SET OF4 WOODLAND"), ("23084", "CAFÉ RABBIT NIGHT LIGHT, £ EDITION"),
]
_COUNTRIES = ["United Kingdom", "United Kingdom", "United Kingdom", "France", "Germany", "EIRE", "España"]


@dataclass
class RetailTruth:
    """What :func:`make_retail_export` wrote and injected (counts are of data lines, header excluded)."""

    path: str
    separator: str
    encoding: str
    decimal_comma: bool
    date_format: str
    calibration_end: str
    observation_end: str
    n_rows: int = 0
    n_customers: int = 0  # customers with at least one purchase
    n_invoices: int = 0  # purchase invoices of customers (= rows of ``clean``)
    n_rows_missing_customer: int = 0
    n_duplicate_rows: int = 0
    n_return_rows: int = 0
    return_value: float = 0.0
    n_customers_returns_only: int = 0
    clean: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # customer_id, timestamp, amount
    returns: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # customer_id, timestamp, amount

    def counts(self) -> dict:
        out = asdict(self)
        out.pop("clean")
        out.pop("returns")
        return out


def _money(x: float) -> float:
    return max(0.01, round(float(x), 2))


def make_retail_export(
    path: "str | Path",
    n_customers: int = 3000,
    seed: int = 7,
    *,
    variant: str = "comma",
    return_share: float = 0.15,
    n_returns_only: int | None = None,
    guest_share: float = 0.05,
    duplicate_share: float = 0.02,
    population: dict | None = None,
) -> RetailTruth:
    """Write the export to ``path`` and return the ground truth.

    ``variant``: ``"comma"`` (``,``-separated, ``.`` decimals, latin-1) or ``"semicolon"``
    (``;``-separated, decimal commas, cp1252). ``return_share``: share of customers with one
    cancellation invoice; ``n_returns_only``: customers with only returns (default 2% of
    ``n_customers``); ``guest_share``: guest invoices per customer invoice; ``duplicate_share``:
    share of customer purchase lines written twice. ``population``: BG/NBD + Gamma-Gamma parameters
    that replace the default (CDNOW-like) ones, e.g. ``{"a": 1e-6, "b": 1e3}`` for a population without dropout.
    """
    if variant not in ("comma", "semicolon"):
        raise ValueError("variant must be 'comma' or 'semicolon'")
    rng = np.random.default_rng(seed)
    params = {"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4, "p": 6.25, "q": 3.74, "v": 15.44, **(population or {})}
    sim = simulate(n_customers, **params, time_unit="W", start=_START, cohort_length="12W", end=_END, seed=seed, timestamp_resolution="min")
    semicolon = variant == "semicolon"
    truth = RetailTruth(str(path), ";" if semicolon else ",", "cp1252" if semicolon else "latin-1", semicolon,
                        DATE_FORMAT, CALIBRATION_END, OBSERVATION_END)
    end = pd.Timestamp(_END)
    invoice_no = [536365]

    def next_invoice() -> int:
        invoice_no[0] += 1
        return invoice_no[0]

    def item_lines(amount: float) -> list[tuple[str, str, int, float]]:
        k = int(rng.integers(1, 5))
        picks = rng.choice(len(_PRODUCTS), size=k, replace=False)  # distinct items: no accidental duplicates
        parts = rng.dirichlet(np.ones(k)) * amount
        lines = []
        for product, part in zip(picks, parts):
            quantity = int(rng.integers(1, 7))
            code, description = _PRODUCTS[int(product)]
            lines.append((code, description, quantity, _money(part / quantity)))
        return lines

    # one record per line: (timestamp, invoice, code, description, quantity, price, customer or None, country)
    records: list[tuple] = []
    clean_rows, return_rows = [], []
    customer_lines: list[int] = []  # indices of customer purchase lines (duplicate candidates)
    ids = sim["customer_id"].to_numpy() + _FIRST_ID
    stamps = sim["timestamp"].to_numpy()
    amounts = sim["amount"].to_numpy()
    country = {int(c): _COUNTRIES[int(rng.integers(len(_COUNTRIES)))] for c in np.unique(ids)}
    invoices: dict[int, list[tuple]] = {}
    for cid, stamp, amount in zip(ids, stamps, amounts):
        cid, stamp = int(cid), pd.Timestamp(stamp)
        number = next_invoice()
        lines = item_lines(float(amount))
        total = 0.0
        for code, description, quantity, price in lines:
            customer_lines.append(len(records))
            records.append((stamp, str(number), code, description, quantity, price, cid, country[cid]))
            total += quantity * price
        clean_rows.append((cid, stamp, total))
        invoices.setdefault(cid, []).append((stamp, lines))
    truth.n_customers = len(invoices)
    truth.n_invoices = len(clean_rows)

    # cancellations: part of one invoice of a sampled customer, some days later (before the end)
    customers = np.array(sorted(invoices))
    with_returns = rng.choice(customers, size=int(round(return_share * len(customers))), replace=False)
    for cid in with_returns:
        cid = int(cid)
        stamp, lines = invoices[cid][int(rng.integers(len(invoices[cid])))]
        when = min(stamp + pd.Timedelta(minutes=int(rng.integers(60, 20 * 24 * 60))), end)
        code, description, quantity, price = lines[int(rng.integers(len(lines)))]
        back = int(rng.integers(1, quantity + 1)) if len(lines) > 1 else max(1, quantity - 1)
        if len(lines) == 1 and quantity == 1:
            continue  # returning it would return the whole purchase
        number = next_invoice()
        records.append((when, f"C{number}", code, description, -back, price, cid, country[cid]))
        return_rows.append((cid, when, -back * price))
    # customers whose rows are only returns
    n_only = int(round(0.02 * n_customers)) if n_returns_only is None else n_returns_only
    for j in range(n_only):
        cid = _FIRST_ID + n_customers + 100 + j
        when = pd.Timestamp(_START) + pd.Timedelta(minutes=int(rng.integers(0, 300 * 24 * 60)))
        number = next_invoice()
        for code, description, quantity, price in item_lines(float(rng.gamma(6.0, 3.0)))[:2]:
            records.append((when, f"C{number}", code, description, -quantity, price, cid, "United Kingdom"))
            return_rows.append((cid, when, -quantity * price))
    truth.n_customers_returns_only = n_only
    truth.n_return_rows = len(return_rows)
    truth.return_value = float(sum(r[2] for r in return_rows))

    # guest invoices (no customer id)
    n_guest = int(round(guest_share * truth.n_invoices))
    for _ in range(n_guest):
        when = pd.Timestamp(_START) + pd.Timedelta(minutes=int(rng.integers(0, 370 * 24 * 60)))
        number = next_invoice()
        for code, description, quantity, price in item_lines(float(rng.gamma(6.0, 3.0))):
            records.append((min(when, end), str(number), code, description, quantity, price, None, "United Kingdom"))
            truth.n_rows_missing_customer += 1

    # exact duplicate lines: a customer purchase line written twice
    n_dup = int(round(duplicate_share * len(customer_lines)))
    duplicated = set(int(i) for i in rng.choice(customer_lines, size=n_dup, replace=False))
    truth.n_duplicate_rows = n_dup

    order = sorted(range(len(records)), key=lambda i: (records[i][0], records[i][1]))
    decimal = "," if semicolon else "."

    def number_text(x: float) -> str:
        return f"{x:.2f}".replace(".", decimal)

    with open(path, "w", encoding=truth.encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=truth.separator, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(COLUMNS)
        for i in order:
            stamp, number, code, description, quantity, price, cid, where = records[i]
            customer = "" if cid is None else f"{cid}.0".replace(".", decimal)
            row = [number, code, description, quantity, stamp.strftime(DATE_FORMAT), number_text(price), customer, where]
            writer.writerow(row)
            truth.n_rows += 1
            if i in duplicated:
                writer.writerow(row)
                truth.n_rows += 1
    truth.clean = pd.DataFrame(clean_rows, columns=["customer_id", "timestamp", "amount"])
    truth.returns = pd.DataFrame(return_rows, columns=["customer_id", "timestamp", "amount"])
    return truth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="CSV file to write")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--variant", choices=["comma", "semicolon"], default="comma")
    args = parser.parse_args(argv)
    truth = make_retail_export(args.out, args.customers, args.seed, variant=args.variant)
    print(json.dumps(truth.counts(), indent=2))


if __name__ == "__main__":
    main()
