"""perf/timeline.py on a hand-made timeline whose figures are known: two blocks share tile 0 in two parts; block 1
arrives last and sums it."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "perf"))
import timeline  # noqa: E402

CSV = """# m=256 n=11008 k=4096 config=7 blocks=2 units=128 stages=64 events=11
block,sm,kind,tile,value,ns
0,0,0,0,0,0
1,1,0,0,32,200
0,0,1,0,0,1000
1,1,1,0,0,1500
0,0,2,0,0,10000
1,1,2,0,0,10500
0,0,3,0,0,11000
1,1,3,0,1,11200
1,1,4,0,2,14200
0,0,5,0,32,11500
1,1,5,0,32,14300
"""


def write(tmp_path, text):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return str(path)


def test_the_figures_of_a_known_timeline(tmp_path):
    header, blocks = timeline.load(write(tmp_path, CSV))
    assert header == {"m": 256, "n": 11008, "k": 4096, "config": 7, "blocks": 2, "units": 128, "stages": 64,
                      "events": 11}
    s = timeline.summarize(blocks)
    assert (s["blocks"], s["sms"]) == (2, 2)
    assert s["first_data"]["median"] == pytest.approx(1.15)  # 1.0 and 1.3 us after each block's start
    assert (s["end"]["min"], s["end"]["max"]) == (pytest.approx(11.5), pytest.approx(14.3))
    # Block 1 summed its last tile: 14.3 - 10.5; block 0 only wrote its part: 11.5 - 10.0.
    assert s["tail_summing"]["max"] == pytest.approx(3.8) and s["tail_summing"]["n"] == 1
    assert s["tail_other"]["max"] == pytest.approx(1.5) and s["tail_other"]["n"] == 1
    assert s["part_write"][2]["max"] == pytest.approx(0.7)  # block 1: arrived 11.2, computed 10.5
    assert s["part_write"]["not summed here"]["max"] == pytest.approx(1.0)
    assert s["sum"][2]["max"] == pytest.approx(3.0)


def test_the_cli_prints_the_summary_and_refuses_other_files(tmp_path, capsys):
    assert timeline.main([write(tmp_path, CSV), "--blocks"]) == 0
    out = capsys.readouterr().out
    assert "2 blocks on 2 SMs" in out and "block 1 sm 1: start:0:32@0.20" in out
    assert timeline.main([write(tmp_path, "block,kind\n1,2\n")]) == 2
    assert "header line first" in capsys.readouterr().err
    assert timeline.main([write(tmp_path, CSV.replace("1,1,4,0,2,14200", "1,1,9,0,2,14200"))]) == 2
    assert "unknown kind 9" in capsys.readouterr().err
    assert timeline.main([write(tmp_path, "# m=1\nblock,kind\n1,2\n")]) == 2
    assert "expected columns block,sm,kind,tile,value,ns" in capsys.readouterr().err
    assert timeline.main([write(tmp_path, CSV.replace("1,1,4,0,2,14200", "1,1,4,0,x,14200"))]) == 2
    assert "is not six integers" in capsys.readouterr().err
    assert timeline.main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
