"""Numbers people read: one formatter (kdlab.number_format) for the dashboard's tables and cards and the CLI's
reports; never scientific notation for a metric value (0.00178, not 1.7763e-03)."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from kdlab.analysis import doctor
from kdlab.number_format import num, plain

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("x, shown", [
    (0.0017763, "0.00178"), (1.7763e-05, "0.0000178"), (0.5, "0.5000"), (0.91234, "0.9123"), (-0.0425, "-0.0425"),
    (12345.6, "12,346"), (0.0, "0"), (float("nan"), "nan"), (3e-12, "3.00e-12")])
def test_num_by_hand(x, shown):
    assert num(x) == shown


@pytest.mark.parametrize("x, shown", [(124.3, "124"), (0.0012345, "0.00123"), (1.2e-5, "0.000012"), (24.5, "24.5"),
                                      (1234.5, "1230")])
def test_plain_is_a_value_a_user_types_back(x, shown):
    assert plain(x) == shown and float(shown) == pytest.approx(x, rel=0.01)


def test_the_doctors_advice_reads_as_numbers():
    # a term with 0.4 % of the gradient: multiply its weight by about 250 (1.7e+02 in %.2g before)
    f = doctor.grad_share_finding({"kd": {"mean_share": 0.004, "steps": 2}, "ce": {"mean_share": 0.5, "steps": 2},
                                   "hidden": {"mean_share": 0.496, "steps": 2}}, "hidden", {"alpha_soft": 0.5})
    assert "multiply alpha_soft by about 250" in f["next"] and "--set alpha_soft=124)" in f["next"]   # 0.5 * 249
    assert "e+" not in f["next"] and "e-" not in f["next"]
    import numpy as np
    z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.001]])
    f = doctor.agreement_finding({"dev": z * 1.1}, {"dev": z})   # KL(teacher||student) about 0.0016
    kl = f["data"]["splits"]["dev"]["kl"]
    assert 1e-4 < kl < 0.01 and f"KL(teacher||student) {num(kl)}" in f["figure"] and "e-0" not in f["figure"]


def test_the_dashboards_tables_show_floats_through_num():
    spec = importlib.util.spec_from_file_location("kdlab_app_common_numbers", ROOT / "app" / "common.py")
    C = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(C)
    assert C.num is num
    df = pd.DataFrame({"kl": [0.0017763, 0.25], "run": ["a", "b"], "n": [3, 4]}, index=["x", "y"])
    html = C.readable(df).to_html()
    assert "0.00178" in html and "0.2500" in html and "e-03" not in html
    assert C.readable(df).data is df   # the values (and the CSV download) stay the numbers
