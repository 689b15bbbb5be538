"""The laminectomy proposal."""
from leakloc.detect import Defect
from leakloc.plan import propose


def _d(level, side, kind, conf=0.95, coord=0.0):
    return Defect(level=level, level_coord=coord, z_mm=0.0, side=side, kind=kind,
                  onset_time_s=20.0, confidence=conf)


def test_no_defect_no_plan():
    assert propose([]) is None


def test_ventral_interspace_tear():
    p = propose([_d("T7-T8", "ventral", "dural_tear")])
    assert p.levels == ["T7", "T8"]
    assert p.side == "bilateral"
    assert p.note.startswith("ventral tear: transdural approach")
    assert p.uncertainty_levels == 0.5


def test_lateral_sleeve_is_a_hemilaminectomy():
    p = propose([_d("C7", "left", "nerve_root_sleeve")])
    assert p.levels == ["C7"]
    assert p.side == "left"
    assert "foraminotomy" in p.note


def test_uncertain_call_widens_by_a_level():
    p = propose([_d("T10", "right", "csf_venous_fistula", conf=0.4)])
    assert p.levels == ["T9", "T10", "T11"]
    assert p.side == "right"
    assert p.uncertainty_levels == 1.0


def test_second_defect_named_in_note():
    p = propose([_d("T7-T8", "ventral", "dural_tear"), _d("T2", "ventral", "dural_tear")])
    assert "T2" in p.note


def test_report_dict():
    p = propose([_d("T1-T2", "ventral", "dural_tear")])
    r = p.to_report()
    assert r["levels"] == ["T1", "T2"] and r["side"] == "bilateral" and "note" in r
