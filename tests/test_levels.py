"""Level names, coordinates and TotalSegmentator ids."""
import pytest

from leakloc import levels as lv


def test_names_and_order():
    assert lv.VERTEBRAE[0] == "C1" and lv.VERTEBRAE[-1] == "S1"
    assert len(lv.VERTEBRAE) == 25
    assert lv.index("T1") == 7 and lv.index("l5") == 23


def test_totalsegmentator_ids():
    assert lv.TOTALSEG_ID["S1"] == 26
    assert lv.TOTALSEG_ID["L5"] == 27
    assert lv.TOTALSEG_ID["T12"] == 32
    assert lv.TOTALSEG_ID["T1"] == 43
    assert lv.TOTALSEG_ID["C1"] == 50
    assert lv.TOTALSEG_NAME[44] == "C7"


@pytest.mark.parametrize("coord, name", [(13.0, "T7"), (13.5, "T7-T8"), (13.74, "T7-T8"),
                                         (13.76, "T8"), (6.5, "C7-T1"), (0.0, "C1"),
                                         (24.0, "S1"), (23.5, "L5-S1"), (30.0, "S1")])
def test_name_of(coord, name):
    assert lv.name_of(coord) == name


@pytest.mark.parametrize("name", ["T7", "T7-T8", "C7-T1", "L5-S1", "C1", "S1"])
def test_coord_round_trip(name):
    assert lv.name_of(lv.coord_of(name)) == name


def test_bad_names():
    with pytest.raises(ValueError):
        lv.index("T13")
    with pytest.raises(ValueError):
        lv.coord_of("T7-T9")
    with pytest.raises(ValueError):
        lv.name_of(float("nan"))
