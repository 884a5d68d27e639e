"""The global-optimality reproduction: fast run, files, report."""

import json

from nnlift.reproduce import global_optimality


def test_fast_run_save_and_report(tmp_path):
    result = global_optimality.run(fast=True, random_state=0)
    assert result["agrees"] == {"matrix": True, "relu": True, "degree": True, "dropout": True}
    assert result["matrix"]["summary"]["max_abs_rel_err_cvxpy"] <= 1e-6
    relu, degree = result["relu"]["summary"], result["degree"]["summary"]
    assert relu["exact_certified"] == relu["runs"] and relu["heuristic_certified"] == 0   # ascent never certifies
    assert degree["matched_certified"] == 0 and degree["matched_polar_upper_range"][0] > 1   # no exact depth-3 polar
    assert degree["matched_max_bound_violation"] <= 0                                     # verified bounds hold
    paths = global_optimality.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["global_optimality.json", "global_optimality.png"]
    assert json.loads(paths[0].read_text())["matrix"]["summary"]["ranks_equal"] is True
    assert paths[1].stat().st_size > 10_000
    text = global_optimality.report(result)
    assert "Haeffele" in global_optimality.CLAIM and "| claim | measured | verdict |" in text
    assert "does not agree" not in text
