#!/usr/bin/env python3
"""Independent check of a run's human-readable reports and its --metrics-out file.

- report.html parses with Python's html.parser; every plot the issue lists is there, inline
  as <svg>, and the same chart exists as report/<id>.svg, which parses with xml.etree and
  draws at least as many marks as the figure says it has data points (never an empty frame);
  reliability diagrams have one point per non-empty bin of report.json.
- Every number in a table carries data-source/data-key/data-value: the value equals
  report.json (a JSON pointer) or timings.json (a key) exactly, and the shown text is that
  value rounded.
- report.md links every chart.
- The metrics file parses with prometheus_client's parser and its values equal report.json.
"""
import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

SVG = "{http://www.w3.org/2000/svg}"


class Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figures = {}  # id -> {"points": n, "svg": bool}
        self.numbers = []  # (source, key, value, text)
        self._figure = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure" and "data-plot" in a:
            self._figure = a["data-plot"]
            self.figures[self._figure] = {"points": int(a["data-points"]), "svg": False}
        elif tag == "svg" and self._figure is not None:
            self.figures[self._figure]["svg"] = True
        elif tag == "td" and "data-key" in a:
            self._cell = [a["data-source"], a["data-key"], float(a["data-value"]), ""]

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "td" and self._cell is not None:
            self.numbers.append(tuple(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[3] += data


def pointer(doc, key):
    for part in key.lstrip("/").split("/"):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def fail(msg):
    print(f"check_report: {msg}", file=sys.stderr)
    sys.exit(1)


def expected_plots(report):
    ids = ["train-loss", "valid-auc", "auc-vs-size", "ndcg-vs-size", "auc-vs-latency"]
    if any(s["name"] == "distill" and s["detail"].get("student") for s in report["stages"]):
        ids.append("distill-loss")
    for m in report["eval"]["models"]:
        ids.append(f"reliability-{m['name']}")
    for s in report["stages"]:
        if s["name"].startswith("quantize-"):
            name = s["detail"]["kind"]
            ids += [f"activations-{name}-layer{l['layer']}" for l in s["detail"]["layers"]]
            ids.append(f"scatter-{name}")
    return ids


def check_svg(path, points, bars):
    root = ET.parse(path).getroot()
    if root.tag != SVG + "svg":
        fail(f"{path}: root is {root.tag}, not svg")
    circles = len(root.findall(f".//{SVG}circle"))
    rects = len(root.findall(f".//{SVG}rect"))
    if points < 1:
        fail(f"{path}: the figure has no data points")
    if bars:
        # One rect per bar, plus the background and legend boxes.
        if rects < points + 1:
            fail(f"{path}: {rects} rects for {points} bars")
    elif circles != points:
        fail(f"{path}: {circles} circles drawn for {points} data points")


def check_verdict(markdown, report):
    """The report's first line names every failed gate and the artifact to ship, as
    report.json has them; every model's manifest status agrees with the gates that judge it
    or an ancestor."""
    first = markdown.splitlines()[0]
    failed = [g for g in report["gates"] if not g["passed"]]
    for g in failed:
        if f"gate {g['name']} on {g['artifact']}" not in first:
            fail(f"first line does not name failed gate {g['name']}: {first}")
    ship = report.get("recommended")
    if (f"ship {ship}" if ship else "nothing here is fit to ship") not in first:
        fail(f"first line does not say what to ship ({ship}): {first}")
    if not failed and "every gate passes" not in first and report["gates"]:
        fail(f"all gates pass but the first line says otherwise: {first}")


def check_numbers(parser, report, timings):
    if len(parser.numbers) < 20:
        fail(f"only {len(parser.numbers)} sourced numbers in the HTML")
    for source, key, value, text in parser.numbers:
        want = pointer(report, key) if source == "report" else timings[key]
        # serde_json's default float parser may land one ulp off when the report generator
        # reads timings.json back: equal to 12 significant digits, not bit for bit.
        if not math.isclose(value, float(want), rel_tol=1e-12, abs_tol=0.0):
            fail(f"{source} {key}: the report says {value}, the JSON {want}")
        decimals = len(text.split(".")[1]) if "." in text else 0
        if abs(float(text) - want) > 0.5 * 10 ** -decimals + 1e-12:
            fail(f"{source} {key}: shown as {text}, the value is {want}")


def check_metrics(path, report):
    families = {f.name: f for f in text_string_to_metric_families(Path(path).read_text())}
    auc = {s.labels["model"]: s.value for s in families["reco_model_auc"].samples}
    for m in report["eval"]["models"]:
        got, want = auc[m["name"]], m["auc"]
        if want is None:
            if not math.isnan(got):
                fail(f"metrics: {m['name']} AUC not measurable but exported as {got}")
        elif got != want:
            fail(f"metrics: {m['name']} AUC {got}, report.json {want}")
    gates = {(s.labels["gate"], s.labels["artifact"]): s.value for s in families["reco_gate_passed"].samples}
    if len(gates) != len(families["reco_gate_passed"].samples):
        fail("metrics: two reco_gate_passed samples with the same gate and artifact")
    for g in report["gates"]:
        key = (g["name"], g["artifact"])
        if gates[key] != (1.0 if g["passed"] else 0.0):
            fail(f"metrics: gate {key} is {gates[key]}")
    for fam in ["reco_model_artifact_bytes", "reco_scoring_rows_per_second", "reco_stage_duration_seconds", "reco_run_passed"]:
        if not families.get(fam) or not families[fam].samples:
            fail(f"metrics: no {fam}")
    if any(s.labels.get("recipe") != report["recipe"] for f in families.values() for s in f.samples):
        fail("metrics: a sample without the recipe label")
    return sum(len(f.samples) for f in families.values())


def parse_only(paths):
    """`eval --metrics-out` / `bench --metrics-out` files: they parse, every sample has a
    recipe and a model label, values are numbers."""
    for path in paths:
        families = list(text_string_to_metric_families(Path(path).read_text()))
        samples = [s for f in families for s in f.samples]
        if not samples:
            fail(f"{path}: no samples")
        for s in samples:
            if not s.labels.get("recipe") or not s.labels.get("model") or not isinstance(s.value, (int, float)):
                fail(f"{path}: sample {s} lacks a recipe or model label or a value")
        print(f"check_report: {path}: {len(families)} families, {len(samples)} samples parse")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="the run's output root")
    ap.add_argument("--metrics", help="the run's --metrics-out file")
    ap.add_argument("--parse", nargs="*", default=[], help="other --metrics-out files to parse")
    a = ap.parse_args()
    parse_only(a.parse)
    if not a.out:
        return
    out = Path(a.out)
    report = json.loads((out / "report.json").read_text())
    timings = json.loads((out / "timings.json").read_text())
    parser = Report()
    parser.feed((out / "report.html").read_text())
    markdown = (out / "report.md").read_text()
    check_verdict(markdown, report)
    for pid in expected_plots(report):
        fig = parser.figures.get(pid)
        if fig is None or not fig["svg"]:
            fail(f"plot {pid}: missing from report.html (or not inline SVG)")
        check_svg(out / "report" / f"{pid}.svg", fig["points"], pid.startswith("activations-"))
        if f"(report/{pid}.svg)" not in markdown:
            fail(f"plot {pid}: report.md does not link it")
    for m in report["eval"]["models"]:
        bins = sum(1 for b in m["calibration"] if b["count"] > 0)
        if parser.figures[f"reliability-{m['name']}"]["points"] != bins:
            fail(f"reliability-{m['name']}: not one point per non-empty bin ({bins})")
    check_numbers(parser, report, timings)
    samples = check_metrics(a.metrics, report) if a.metrics else 0
    print(f"check_report: {len(parser.figures)} plots, {len(parser.numbers)} numbers match report.json/timings.json; {samples} metric samples parsed")


if __name__ == "__main__":
    main()
