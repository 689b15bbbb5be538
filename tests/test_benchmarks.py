"""The benchmark harness: scoring (regimes, exact / within-one / side / kind), calibration bins, Platt fit, and the replay of detection on captured inputs."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

_SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep.py"
_spec = importlib.util.spec_from_file_location("leakloc_bench_sweep", _SWEEP)
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def tear(coord=13.5, side="ventral", kind="dural_tear", flow="slow"):
    return {"level_coord": coord, "side": side, "kind": kind, "flow": flow}


def call(coord=13.5, side="ventral", kind="dural_tear", conf=0.9):
    return {"level_coord": coord, "side": side, "kind": kind, "confidence": conf}


# -- exact / within one / side / kind ---------------------------------------------------------

@pytest.mark.parametrize("called, exact, within", [
    (13.5, True, True), (14.0, True, True), (13.0, True, True),     # half a level: exact
    (14.5, False, True), (12.5, False, True),                        # one level: within one
    (14.51, False, False), (15.0, False, False), (9.0, False, False),
])
def test_level_exact_and_within_one(called, exact, within):
    s = sweep.score_study([tear(13.5)], [call(called)])
    assert s["leak"] is True and s["detected"] is True
    assert s["exact"] is exact
    assert s["within_one"] is within
    assert s["level_error"] == pytest.approx(abs(called - 13.5))
    assert s["correct"] is exact                                     # side is right here


def test_side_and_kind_are_of_the_top_call():
    s = sweep.score_study([tear(7.5, side="ventral")],
                          [call(7.5, side="left", kind="nerve_root_sleeve"), call(7.5)])
    assert (s["exact"], s["side"], s["kind"], s["correct"]) == (True, False, False, False)
    assert s["n_calls"] == 2 and s["truth_found"] == 1 and s["false_calls"] == 0


def test_primary_is_the_earliest_onset_truth_defect():
    truth = [tear(7.5), tear(15.0, side="right", kind="csf_venous_fistula")]
    s = sweep.score_study(truth, [call(15.0, side="right", kind="csf_venous_fistula"), call(7.5)])
    assert s["exact"] is False and s["side"] is False and s["kind"] is False
    assert s["truth_found"] == 2 and s["false_calls"] == 0
    s = sweep.score_study(truth, [call(7.5), call(20.0)])
    assert s["exact"] is True and s["truth_found"] == 1 and s["false_calls"] == 1


def test_missed_leak_is_wrong_everywhere():
    s = sweep.score_study([tear()], [], static=None)
    assert s["detected"] is False
    assert (s["exact"], s["within_one"], s["side"], s["kind"], s["correct"]) == (False,) * 5
    assert s["level_error"] is None and s["no_call"] is None


def test_error_counts_as_wrong_even_with_calls():
    s = sweep.score_study([tear()], [call()], static=("T7-T8", "ventral"), error="AnalysisError: x")
    assert s["detected"] is False and s["exact"] is False and s["static_exact"] is False
    assert s["n_calls"] == 0
    c = sweep.score_study([], [], static=None, error="AnalysisError: no canal")
    assert c["leak"] is False and c["no_call"] is False and c["static_no_call"] is False


def test_controls_specificity():
    assert sweep.score_study([], [])["no_call"] is True
    s = sweep.score_study([], [call(10.0)], static=("T4", "dorsal"))
    assert s["no_call"] is False and s["correct"] is False and s["false_calls"] == 1
    assert s["static_no_call"] is False
    assert s["exact"] is None and s["detected"] is None
    assert sweep.score_study([], [], static=None)["static_no_call"] is True


def test_static_reading_scored_by_level_name():
    # T7-T8 = 13.5; T8 = 14.0; T9 = 15.0
    s = sweep.score_study([tear(13.5)], [], static=("T8", "ventral"))
    assert (s["static_exact"], s["static_within_one"], s["static_side"]) == (True, True, True)
    s = sweep.score_study([tear(13.5)], [], static=("T9", "dorsal"))
    assert (s["static_exact"], s["static_within_one"], s["static_side"]) == (False, False, False)
    s = sweep.score_study([tear(13.5)], [], static=("T8-T9", "ventral"))
    assert (s["static_exact"], s["static_within_one"]) == (False, True)


# -- summaries --------------------------------------------------------------------------------

def test_summarize_fractions_over_applicable_studies():
    scores = [sweep.score_study([tear(13.5)], [call(13.5)]),
              sweep.score_study([tear(13.5)], [call(14.5)]),
              sweep.score_study([tear(13.5)], [], error="boom"),
              sweep.score_study([], []),
              sweep.score_study([], [call(3.0)])]
    s = sweep.summarize(scores)
    assert (s["n"], s["n_leak"], s["n_control"], s["errors"]) == (5, 3, 2, 1)
    assert s["exact"] == {"k": 1, "n": 3, "frac": 1 / 3}
    assert s["within_one"] == {"k": 2, "n": 3, "frac": 2 / 3}
    assert s["detected"]["k"] == 2
    assert s["no_call"] == {"k": 1, "n": 2, "frac": 0.5}
    empty = sweep.summarize([sweep.score_study([], [])])
    assert empty["exact"] == {"k": 0, "n": 0, "frac": None}


def test_summarize_by_regime_groups_by_tag():
    recs = [{"tags": ["all", "leak", "slow"], "score": sweep.score_study([tear()], [call()])},
            {"tags": ["all", "leak", "high-flow"], "score": sweep.score_study([tear()], [call(20.0)])},
            {"tags": ["all", "control"], "score": sweep.score_study([], [])}]
    by = sweep.summarize_by_regime(recs)
    assert list(by) == ["all", "leak", "control", "slow", "high-flow"]
    assert by["slow"]["exact"]["frac"] == 1.0 and by["high-flow"]["exact"]["frac"] == 0.0
    assert by["all"]["exact"] == {"k": 1, "n": 2, "frac": 0.5}
    t = sweep.targets(by["all"])
    assert t["exact"]["met"] is False and t["specificity"]["met"] is True


# -- regimes ----------------------------------------------------------------------------------

def test_regime_tags_from_phantom_params():
    from leakloc.phantoms import DefectSpec, PhantomParams
    p = PhantomParams(defects=[DefectSpec(kind="nerve_root_sleeve", level_coord=12.0, side="left",
                                          flow="high", pseudomeningocele=True)],
                      osteophytes=[(12.4, 1.0)], motion_mm=2.0, pre_contrast=False,
                      patient_position="HFDL", coverage=("C1", "S1"))
    truth = [{"level_coord": 12.0, "side": "left", "kind": "nerve_root_sleeve", "flow": "high"}]
    tags = sweep.regime_tags(p, truth)
    assert tags == ["all", "leak", "high-flow", "kind: nerve_root_sleeve", "side: left",
                    "pseudomeningocele", "osteophyte", "motion", "no pre-contrast", "position: HFDL"]


def test_regime_tags_control_from_truth_dict():
    params = {"defects": [], "calcified_discs": [[10.5, 0.0]], "diverticula": [[8.5, "left"]],
              "sealed_collection": [4.0, 10.0], "motion_mm": 0.0, "motion_deg": 0.0,
              "pre_contrast": True, "scoliosis_mm": 5.0, "streaks": True,
              "coverage": ["C5", "T12"], "patient_position": "HFS"}
    assert sweep.regime_tags(params, []) == [
        "all", "control", "calcified disc", "diverticulum", "sealed collection", "scoliosis",
        "streaks", "partial coverage", "position: HFS"]


def test_regime_tags_several_defects_use_the_first():
    truth = [tear(7.5, flow="slow"), tear(15.0, side="right", kind="csf_venous_fistula", flow="high")]
    tags = sweep.regime_tags({"defects": [], "coverage": ["C1", "S1"]}, truth)
    assert tags == ["all", "leak", "slow", "kind: dural_tear", "side: ventral", "several defects"]


def test_regime_tags_of_a_random_phantom_match_its_params():
    from leakloc.phantoms import generate
    study = generate(seed=10003)
    tags = sweep.regime_tags(study.truth["params"], study.truth["defects"])
    p = study.params
    assert ("leak" in tags) == bool(p.defects)
    assert ("motion" in tags) == (p.motion_mm > 0)
    assert ("no pre-contrast" in tags) == (not p.pre_contrast)
    assert f"position: {p.patient_position}" in tags


# -- calibration ------------------------------------------------------------------------------

def test_calibration_bins_arithmetic():
    conf = [0.05, 0.15, 0.15, 0.91, 0.95, 1.0, 0.5]
    ok = [False, True, False, True, True, False, True]
    bins = sweep.calibration_bins(conf, ok, n_bins=10)
    assert len(bins) == 10
    assert [b["n"] for b in bins] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 3]
    assert [b["k"] for b in bins] == [0, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert bins[9]["lo"] == 0.9 and bins[9]["hi"] == 1.0
    assert bins[9]["mean_confidence"] == pytest.approx((0.91 + 0.95 + 1.0) / 3)
    assert bins[9]["frac_correct"] == pytest.approx(2 / 3)
    assert bins[1]["frac_correct"] == 0.5 and bins[2]["frac_correct"] is None
    assert bins[5]["mean_confidence"] == 0.5                    # 0.5 opens bin 5
    ece = sweep.expected_calibration_error(bins)
    want = (1 * 0.05 + 2 * abs(0.15 - 0.5) + 1 * 0.5 + 3 * abs((0.91 + 0.95 + 1.0) / 3 - 2 / 3)) / 7
    assert ece == pytest.approx(want)
    assert sweep.expected_calibration_error(sweep.calibration_bins([], [])) is None
    with pytest.raises(ValueError):
        sweep.calibration_bins([0.5], [True, False])


def test_fit_platt_recovers_known_odds():
    # P(correct | x = -1) = 1/3, P(correct | x = 1) = 2/3  ->  a = ln 2, b = 0 (ridge ~1e-9 here)
    x = [-1, -1, -1, 1, 1, 1]
    y = [0, 0, 1, 1, 1, 0]
    a, b = sweep.fit_platt(x, y, l2=0.0)
    assert a == pytest.approx(math.log(2), abs=1e-8) and b == pytest.approx(0.0, abs=1e-8)
    # shifted: P = 3/4 at x = 0, 1/4 at x = 2  ->  a = -ln 3, b = ln 3
    a, b = sweep.fit_platt([0, 0, 0, 0, 2, 2, 2, 2], [1, 1, 1, 0, 0, 0, 0, 1], l2=0.0)
    assert a == pytest.approx(-math.log(3), abs=1e-8) and b == pytest.approx(math.log(3), abs=1e-8)


def test_fit_platt_with_ambiguity_recovers_known_odds():
    # four cells of (score, ambiguity) with known odds: logit = ln2 * score - ln3 * ambiguity
    x, amb, y = [], [], []
    for s_, m_ in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        p = 1.0 / (1.0 + math.exp(-(math.log(2) * s_ - math.log(3) * m_)))
        n = 600
        k = int(round(p * n))
        x += [s_] * n
        amb += [m_] * n
        y += [1] * k + [0] * (n - k)
    a, b, c = sweep.fit_platt(x, y, l2=0.0, ambiguity=amb)
    assert a == pytest.approx(math.log(2), abs=0.02) and c == pytest.approx(-math.log(3), abs=0.02)
    assert b == pytest.approx(0.0, abs=0.02)


def test_fit_platt_with_groups_recovers_offsets():
    # two groups with known odds at score 0 and 1: logit = ln2 * score + b_g, b = ln3 and -ln3
    x, y, g = [], [], []
    for name, b_g in (("sleeve", math.log(3)), ("tear", -math.log(3))):
        for s_ in (0, 1):
            p = 1.0 / (1.0 + math.exp(-(math.log(2) * s_ + b_g)))
            n = 800
            k = int(round(p * n))
            x += [s_] * n
            y += [1] * k + [0] * (n - k)
            g += [name] * n
    fit = sweep.fit_platt(x, y, l2=0.0, ambiguity=[0.0] * len(x), groups=g, l2_group=0.0)
    assert fit["a"] == pytest.approx(math.log(2), abs=0.03)
    assert fit["b"]["sleeve"] == pytest.approx(math.log(3), abs=0.03)
    assert fit["b"]["tear"] == pytest.approx(-math.log(3), abs=0.03)
    # a ridge on the deviations pulls a small group towards the common offset
    held = sweep.fit_platt(x, y, ambiguity=[0.0] * len(x), groups=g, l2_group=10.0)
    assert abs(held["b"]["sleeve"] - held["b"]["tear"]) < 0.2 * (fit["b"]["sleeve"] - fit["b"]["tear"])
    lit = sweep._cal_literal(fit)
    assert eval(lit)["b"]["tear"] == pytest.approx(fit["b"]["tear"], abs=1e-3)


def test_fit_platt_holding_the_slopes_fits_the_offsets_only():
    # logit = ln2 * score - 1 * ambiguity + b_g with b = ln3 (sleeve) and -ln3 (tear): the
    # slopes held at ln2 and -1, the offsets are recovered
    x, y, g, amb = [], [], [], []
    for name, b_g in (("sleeve", math.log(3)), ("tear", -math.log(3))):
        for s_, m_ in ((0, 0.0), (1, 0.0), (0, 1.0), (1, 1.0)):
            p = 1.0 / (1.0 + math.exp(-(math.log(2) * s_ - m_ + b_g)))
            k = int(round(p * 800))
            x += [s_] * 800
            amb += [m_] * 800
            y += [1] * k + [0] * (800 - k)
            g += [name] * 800
    fit = sweep.fit_platt(x, y, ambiguity=amb, groups=g, l2_group=0.0, hold=(math.log(2), -1.0))
    assert fit["a"] == math.log(2) and fit["c"] == -1.0
    assert fit["b"]["sleeve"] == pytest.approx(math.log(3), abs=0.03)
    assert fit["b"]["tear"] == pytest.approx(-math.log(3), abs=0.03)
    # the held ambiguity slope counts: held at 0, the offsets absorb its mean (-0.5)
    no_c = sweep.fit_platt(x, y, ambiguity=amb, groups=g, l2_group=0.0, hold=(math.log(2), 0.0))
    assert no_c["b"]["sleeve"] == pytest.approx(math.log(3) - 0.5, abs=0.1)
    with pytest.raises(ValueError, match="groups"):
        sweep.fit_platt(x, y, hold=(1.0, 0.0))


def test_fit_platt_fits_an_offset_for_moved_studies():
    # two groups, and calls in moved studies one logit lower (-ln 4) in both: recovered
    x, y, g, mv = [], [], [], []
    for name, b_g in (("sleeve", math.log(3)), ("tear", 0.0)):
        for m_ in (False, True):
            p = 1.0 / (1.0 + math.exp(-(b_g - math.log(4) * m_)))
            k = int(round(p * 1000))
            x += [0.0] * 1000
            y += [1] * k + [0] * (1000 - k)
            g += [name] * 1000
            mv += [m_] * 1000
    fit = sweep.fit_platt(x, y, ambiguity=[0.0] * len(x), groups=g, l2_group=0.0,
                          hold=(1.0, 0.0), moved=mv)
    assert fit["moved"] == pytest.approx(-math.log(4), abs=0.05)
    assert fit["b"]["sleeve"] == pytest.approx(math.log(3), abs=0.05)
    assert fit["b"]["tear"] == pytest.approx(0.0, abs=0.05)
    assert eval(sweep._cal_literal(fit))["moved"] == pytest.approx(fit["moved"], abs=1e-3)
    assert sweep.fit_platt(x, y, ambiguity=[0.0] * len(x), groups=g)["moved"] == 0.0
    with pytest.raises(ValueError, match="groups"):
        sweep.fit_platt(x, y, moved=mv)


def test_fit_platt_stays_finite_on_separable_data():
    a, b = sweep.fit_platt([0.0, 1.0, 2.0, 3.0], [0, 0, 1, 1])
    assert np.isfinite(a) and np.isfinite(b) and a > 0
    assert -b / a == pytest.approx(1.5, abs=1e-6)             # the boundary is midway


def test_top_calls_for_pooled_calibration():
    call = {"confidence": 0.6, "score": 1.5, "ambiguity": 0.2, "group": "ventral_tear"}
    records = [
        {"score": {"leak": True, "correct": True}, "calls": [call, dict(call, score=9.0)]},
        {"score": {"leak": False, "correct": False}, "calls": [dict(call, group="dorsal_tear")]},
        {"score": {"leak": True, "correct": False}, "calls": []},                  # no call
        {"score": {"leak": True, "correct": False}, "calls": [call], "error": "x"},  # failed
        {"score": {"leak": None}, "calls": [call]},                                 # lost
        {"score": {"leak": True, "correct": True}, "calls": [call], "case": "fig6_t11"},
    ]
    assert sweep._top_calls(records) == [(0.6, True, 1.5, 0.2, "ventral_tear", False),
                                         (0.6, False, 1.5, 0.2, "dorsal_tear", False)]
    moved = dict(records[0], warnings=["patient moved between passes: registered pass 1 (2.0 mm)"])
    assert sweep._top_calls([moved])[0][5] is True
    args = sweep.parse(["--fit-calibration", "--pool-calibration", "a.json", "b.json"])
    assert args.pool_calibration == [Path("a.json"), Path("b.json")]
    assert sweep.parse([]).pool_calibration == ()


def test_top_calls_group_older_tear_records_by_position():
    def rec(side, position, **extra):
        call = dict({"confidence": 0.7, "score": 1.0, "ambiguity": 0.0, "kind": "dural_tear",
                     "side": side, "group": f"{side}_tear"}, **extra)
        return {"score": {"leak": True, "correct": True}, "calls": [call],
                "truth": {"patient_position": position}}
    records = [rec("ventral", "HFP"), rec("ventral", "FFS"), rec("dorsal", "HFS"),
               rec("dorsal", "FFP"), rec("ventral", "HFDL"), rec("ventral", "FFP"),
               rec("dorsal", "FFS"), rec("dorsal", "FFDR"),
               # records that carry 'dependent' keep their own group
               rec("ventral", "HFP", dependent=False), rec("dorsal", "FFP", dependent=True,
                                                           group="dependent_tear")]
    no_position = rec("dorsal", "")
    del no_position["truth"]
    records.append(no_position)
    assert [t[4] for t in sweep._top_calls(records)] == [
        "dependent_tear", "ventral_tear", "dependent_tear", "dorsal_tear", "ventral_tear",
        "dependent_tear", "dependent_tear", "dorsal_tear", "ventral_tear", "dependent_tear",
        "dorsal_tear"]


def test_fit_only_prints_a_table_from_earlier_results(tmp_path, capsys):
    from leakloc.detect import CALIBRATION
    records = [{"score": {"leak": True, "correct": bool(i % 4)}, "truth": {},
                "calls": [{"confidence": 0.5, "score": float(i % 3), "ambiguity": 0.1,
                           "kind": "nerve_root_sleeve", "side": "left",
                           "group": "nerve_root_sleeve"}]} for i in range(40)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"records": records}))
    out_dir = tmp_path / "out"
    assert sweep.main(["--fit-only", "--hold-slopes", "--pool-calibration", str(path),
                       "--out", str(out_dir)]) == 0
    assert not out_dir.exists()                       # only printed: nothing analysed or written
    out = capsys.readouterr().out
    assert "Platt fit on 40 top calls (slopes held" in out
    table = eval(out.split("CALIBRATION = ")[1].splitlines()[0])
    assert table["a"] == pytest.approx(CALIBRATION["a"], abs=1e-3)
    # 30 of 40 right with the slopes held: the sleeve offset makes the mean confidence 0.75
    p = [1 / (1 + math.exp(-(table["a"] * (i % 3) + table["b"]["nerve_root_sleeve"]
                             + table["c"] * 0.1))) for i in range(40)]
    assert sum(p) / 40 == pytest.approx(0.75, abs=0.01)
    with pytest.raises(SystemExit):
        sweep.parse(["--fit-only"])


def test_error_kind_groups_messages():
    a = sweep.error_kind("AnalysisError: --top-vertebra C1 does not fit: 34 vertebral bodies found")
    b = sweep.error_kind("AnalysisError: --top-vertebra T2 does not fit: 24 vertebral bodies found")
    assert a == b == "AnalysisError: --top-vertebra <level> does not fit: N vertebral bodies found"


def test_jsonable_cleans_numpy_and_nan():
    got = sweep._jsonable({"k": np.str_("dural_tear"), "v": np.float32(1.5), "n": float("nan"),
                           "a": np.arange(2), "b": np.bool_(True), "t": (1, np.int64(2))})
    assert got == {"k": "dural_tear", "v": 1.5, "n": None, "a": [0, 1], "b": True, "t": [1, 2]}
    assert type(got["k"]) is str


# -- replay: detection alone on captured inputs -------------------------------------------------

def _load_replay():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "replay.py"
    spec = importlib.util.spec_from_file_location("leakloc_bench_replay", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_replay_of_a_capture_gives_the_analysis_calls(tmp_path, capsys):
    # a small phantom captured, then detection replayed on what it read: the same calls, scored
    # as the sweep scores them; a changed rule changes the replay, not the capture
    replay = _load_replay()
    msg = replay.capture_one(20, "small", None, tmp_path)
    assert msg.startswith("20: truth")
    assert replay.capture_one(20, "small", None, tmp_path) == "20: already captured"
    import pickle
    rec = pickle.loads((tmp_path / "vox_20.pkl").read_bytes())
    calls, sc = replay.replay(rec)
    assert rec["calls"], "the capture's analysis called a leak"
    assert [(c["level"], c["side"], c["kind"]) for c in calls] == \
        [(c["level"], c["side"], c["kind"]) for c in rec["calls"]]
    assert [c["confidence"] for c in calls] == pytest.approx([c["confidence"] for c in rec["calls"]])
    assert sc == replay.sweep.score_study(rec["truth"], rec["calls"])
    assert replay.main(["score", str(tmp_path), "-v", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith('{"exact": ') and '"leak": 1' in out
    assert json.loads((tmp_path / "out.json").read_text())["20"]["calls"] == calls


def test_replay_totals_count_leaks_and_controls():
    replay = _load_replay()
    leak = sweep.score_study([tear()], [call()])
    miss = sweep.score_study([tear()], [])
    ctl = sweep.score_study([], [])
    t = replay.totals([leak, miss, ctl])
    assert t == {"exact": 1, "within_one": 1, "side": 1, "kind": 1, "detected": 1, "leak": 2,
                 "controls": 1, "no_call": 1}
