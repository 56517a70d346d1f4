"""report.html's answer sentence, its choice of traced variant and its label placement."""

import math

import numpy as np
import pytest

from evaluation.analysis.summary import metric_column
from evaluation.pages.report import (
    REPORT_METRICS,
    answer_sentence,
    label_groups,
    most_changed_variant,
    paired_table,
    pareto_plot,
    significant_changes,
)


def row(variant, paired_n=50, successes=50, changes=None, base=False, compared_to="tinyvla", ci=(0.93, 1.0)):
    """A summary row whose paired changes are {metric: (pct, low %, high %)} against a mean of 2."""
    r = {"task": "Lift", "variant": variant, "is_base": base, "compared_to": compared_to, "episodes": 50,
         "successes": successes, "success_rate": successes / 50, "success_ci_low": ci[0], "success_ci_high": ci[1],
         "paired_n": paired_n}
    for metric in REPORT_METRICS:
        pct, low, high = (changes or {}).get(metric, (1.0, -3.0, 5.0))
        r.update({metric_column(metric, "paired_pct"): pct, metric_column(metric, "paired_base_mean"): 2.0,
                  metric_column(metric, "paired_ci_low"): low / 50, metric_column(metric, "paired_ci_high"): high / 50,
                  metric_column(metric, "paired_mde_pct"): 4.0, metric_column(metric, "mean"): 2.0})
    return r


ROWS = [
    row("tinyvla", base=True, compared_to="tinyvla"),
    row("int8"),
    row("int4", changes={"jerk_ms": (25.0, 19.0, 32.0), "action_rate": (32.0, 20.0, 41.0)}),
    row("dct4", changes={"jerk_ms": (-16.0, -20.0, -12.0)}),
    row("prune50", paired_n=0, successes=0, ci=(0.0, 0.07)),
    row("tokens50", paired_n=4, changes={"jerk_ms": (60.0, 50.0, 70.0)}),  # 4 pairs: not read
]


def test_the_answer_names_each_significant_change_with_its_interval():
    text = answer_sentence(ROWS)
    assert text.startswith("Lift against tinyvla (50/50 solved): ")
    assert "int4: mean action change +32 % [+20, +41], mean squared joint jerk +25 % [+19, +32]" in text
    assert "dct4: mean squared joint jerk -16 % [-20, -12]" in text
    small = answer_sentence([ROWS[0], row("int8", changes={"energy_j": (0.4, 0.1, 0.8)})])
    assert "int8: motor energy +0.4 % [+0.1, +0.8]" in small  # not "+0 % [+0, +1]"
    assert "prune50: solves 0/50 against tinyvla's 50/50, too few paired successes to compare motion (0 < 5)" in text
    assert "tokens50: too few paired successes to compare motion (4 < 5)" in text
    assert "int8: no significant change in completion time, mean squared joint jerk" in text
    assert "+60" not in text  # an interval over too few pairs is not read


def test_an_interval_touching_zero_is_no_change():
    touching = row("int8", changes={"jerk_ms": (5.0, 0.0, 10.0)})
    assert significant_changes(touching) == []
    assert [c.metric for c in significant_changes(ROWS[2])] == ["action_rate", "jerk_ms"]  # largest first


def test_the_traced_variant_is_the_one_that_changed_most():
    assert most_changed_variant(ROWS) == "int4"
    assert most_changed_variant([ROWS[0], ROWS[1], ROWS[5]]) is None  # nothing read as significant


def test_the_paired_table_greys_out_too_few_pairs_and_says_when_every_pair_is_equal():
    equal = row("same", changes={m: (0.0, 0.0, 0.0) for m in REPORT_METRICS})
    for metric in REPORT_METRICS:
        equal[metric_column(metric, "paired_mde_pct")] = 0.0
    table = paired_table([ROWS[0], ROWS[5], equal])
    assert "fewer than 5: intervals not read" in table
    assert "every pair equal" in table and "MDE ±0%" not in table


def test_coincident_points_share_one_label():
    x = np.array([10.0, 10.5, 30.0, 10.2, 80.0])
    y = np.array([100.0, 100.0, 100.0, 103.0, 0.0])
    groups = label_groups(x, y, ["tinyvla", "int8", "expert", "dct4", "prune50"], 6.0, 6.0)
    assert groups == [(0, ["tinyvla", "int8", "dct4"]), (2, ["expert"]), (4, ["prune50"])]


def test_pareto_labels_do_not_overlap_and_flops_read_in_mflop(monkeypatch):
    import evaluation.pages.report as report

    rows = [dict(r, profile_flops_per_call=f, profile_latency_median_ms=lat)
            for r, f, lat in zip(ROWS, [172e6, 172e6, 172e6, 172e6, 172e6, 60e6], [3.0, 3.1, 3.2, 3.0, 2.9, 2.0])]
    seen = {}
    original = report._png

    def inspect_then_encode(fig):  # the figure as drawn, before it is encoded and closed
        renderer = fig.canvas.get_renderer()
        seen["boxes"] = [[text.get_window_extent(renderer) for text in ax.texts] for ax in fig.axes]
        seen["xlabels"] = [ax.get_xlabel() for ax in fig.axes]
        seen["x"] = [np.concatenate([c.get_offsets()[:, 0] for c in ax.collections]) for ax in fig.axes]
        return original(fig)

    monkeypatch.setattr(report, "_png", inspect_then_encode)
    assert pareto_plot(rows) is not None
    for boxes in seen["boxes"]:
        assert boxes and not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    flops = seen["xlabels"].index("FLOPs per call (MFLOP)")
    assert math.isclose(seen["x"][flops].max(), 172.0) and math.isclose(seen["x"][flops].min(), 60.0)
