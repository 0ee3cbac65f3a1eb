"""`tinsel bench compare`'s latency cases against real brokers (tinsel and Mosquitto), with
tiny rounds: the report must carry p50, p99, p99.9 and the maximum as the median of the
rounds with their range, and every round's figure, in results.md and results.json."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = Path("/usr/sbin/mosquitto")
FIGURES = ["p50 µs", "p99 µs", "p99.9 µs", "max µs"]


def compare(tinsel_bin, out, *args, timeout=120):
    return subprocess.run(
        [str(tinsel_bin), "bench", "compare", "--mosquitto", str(MOSQUITTO), "--out", str(out),
         *args],
        capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not MOSQUITTO.exists() or not shutil.which("taskset"),
                    reason="needs Mosquitto's broker and taskset")
def test_latency_rounds_are_interleaved_and_every_round_is_reported(tinsel_bin, tmp_path):
    # latency-q1 is the old name of latency-q1-10k: still accepted.
    p = compare(tinsel_bin, tmp_path, "--brokers", "tinsel,mosquitto", "--modes", "pinned",
                "--cases", "latency-q1-1k,latency-q1", "--latency-rounds", "2",
                "--latency-duration", "0.3")
    assert p.returncode == 0, p.stderr
    saved = json.loads((tmp_path / "results.json").read_text())
    runs = [(m["case"], m["round"], m["broker"]) for m in saved["measurements"]]
    # Round by round, case by case, the brokers taking turns.
    assert runs == [(c, r, b) for r in (0, 1) for c in ("latency-q1-1k", "latency-q1-10k")
                    for b in ("tinsel", "mosquitto")]
    for m in saved["measurements"]:
        assert m["error"] is None, m
        lat = m["report"]["latency_us"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert saved["latency_rounds"] == 2
    summaries = {(s["case"], s["broker"], s["metric"]): s for s in saved["latency"]}
    assert len(summaries) == 2 * 2 * len(FIGURES)
    for (case, broker, metric), s in summaries.items():
        rounds = [m["report"]["latency_us"][{"p50 µs": "p50", "p99 µs": "p99",
                                             "p99.9 µs": "p999", "max µs": "max"}[metric]]
                  for m in saved["measurements"] if (m["case"], m["broker"]) == (case, broker)]
        assert s["rounds"] == rounds
        assert (s["min"], s["max"]) == (min(rounds), max(rounds))
        assert s["median"] == sum(rounds) / 2
    md = (tmp_path / "results.md").read_text()
    assert "## Latency under paced load, every round" in md
    for case in ("latency-q1-1k", "latency-q1-10k"):
        assert f"### pinned {case}" in md
        assert f"{case}: p99 µs ≤ Mosquitto" in md and f"{case}: p99.9 µs ≤ Mosquitto" in md
    for broker in ("tinsel", "mosquitto"):
        for metric in FIGURES:
            rows = [line for line in md.splitlines() if line.startswith(f"| {broker} | {metric} |")]
            assert len(rows) == 2, (broker, metric, md)
            # median (range) | round · round
            assert all("–" in r.split("|")[3] and " · " in r.split("|")[4] for r in rows), rows


def test_a_mistyped_case_names_the_cases_and_zero_rounds_is_refused(tinsel_bin, tmp_path):
    p = compare(tinsel_bin, tmp_path, "--brokers", "tinsel", "--cases", "latency-10k")
    assert p.returncode == 1
    assert "latency-q1-1k, latency-q1-10k, latency-q1-50k" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = compare(tinsel_bin, tmp_path, "--brokers", "tinsel", "--cases", "latency-q1-1k",
                "--latency-rounds", "0")
    assert p.returncode == 1 and "--latency-rounds 0" in p.stderr


def test_results_saved_before_the_split_render_as_the_10k_case(tinsel_bin, tmp_path):
    p = compare(tinsel_bin, tmp_path, "--render", str(ROOT / "docs/benchmarks/results.json"))
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "results.md").read_text()
    assert "latency-q1-10k: p99 µs ≤ Mosquitto" in md
    assert "### pinned latency-q1-10k" in md
