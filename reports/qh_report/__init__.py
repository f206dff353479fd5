"""qh_report: reads qharness results.json files (docs/results.md), predicts benchmark times across GPUs
(qh_report.model, docs/benchmarks.md) and writes the committed baselines (qh_report.baseline).

Run `python -m qh_report --help` from reports/ (or with reports/ on PYTHONPATH).
"""

__all__ = ["results", "model", "baseline"]
