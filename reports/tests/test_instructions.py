"""CI's instruction-count gate (qh_report.instructions): the threshold, missing entries, bad files."""
import json

import pytest

from qh_report import instructions, results
from qh_report.__main__ import main


def write(tmp_path, name, counts):
    path = tmp_path / name
    path.write_text(json.dumps({"binary": "qh_format_bench", "benchmarks": counts}))
    return str(path)


def test_an_increase_above_the_threshold_is_a_regression_and_exits_1(tmp_path, capsys):
    base = write(tmp_path, "b.json", {"a": 1000.0, "b": 1000.0, "c": 1000.0, "gone": 5.0})
    cur = write(tmp_path, "c.json", {"a": 1019.0, "b": 1030.0, "c": 900.0, "new": 5.0})
    rows = {n: s for n, s, _ in instructions.compare(instructions.load_counts(base), instructions.load_counts(cur))}
    assert rows == {"a": "unchanged", "b": "regressed", "c": "improved", "gone": "not compared", "new": "not compared"}
    assert main(["instructions", "--baseline", base, "--current", cur]) == 1
    assert "1 above +2%" in capsys.readouterr().out
    assert main(["instructions", "--baseline", base, "--current", base]) == 0


@pytest.mark.parametrize("content, words", [("{", "not readable JSON"), ('{"benchmarks": {}}', "expected"),
                                            ('{"benchmarks": {"a": 0}}', "non-positive count")])
def test_bad_count_files_are_refused_by_name(tmp_path, content, words):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(results.ResultsError, match=words):
        instructions.load_counts(str(tmp_path / "x.json"))
