"""`--junit`, `--summary` and the README's GitHub Actions workflow, checked with tools we did
not write: junitparser (a maintained JUnit XML parser) and PyYAML.

1. The README's workflow (the ```yaml block under "GitHub Actions") parses; its
   `reco-cli run` step is executed as written (with `reco-cli` on PATH and
   `GITHUB_STEP_SUMMARY` set, in a folder holding the repository's recipes), and the files its
   upload step names exist afterwards.
2. That run's JUnit file: one passing case per gate (value and threshold as properties) and
   one per stage (value, threshold and artifact in its system-out); the step summary holds the
   gates and the models.
3. The same recipe with an impossible gate (distilled NDCG@10 1.0 above scratch): exit 1, and
   the gate is the one failing case, its message naming its value and threshold.
4. `quantize --junit` (two cases) and `eval --junit` on a test split with one class only: the
   AUC cannot be computed, so the case fails saying so.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from junitparser import Error, Failure, JUnitXml


def expect(ok, what):
    if not ok:
        raise SystemExit(f"check_junit: {what}")


def workflow(readme):
    """The README's GitHub Actions workflow, parsed."""
    blocks = re.findall(r"```yaml\n(.*?)```", readme.read_text(), flags=re.S)
    flows = [yaml.safe_load(b) for b in blocks]
    flows = [f for f in flows if isinstance(f, dict) and "jobs" in f]
    expect(len(flows) == 1, f"expected one workflow in the README, found {len(flows)}")
    return flows[0]


def cases(path):
    xml = JUnitXml.fromfile(str(path))
    return [(suite.name, case) for suite in xml for case in suite]


def props(case):
    """The `key: value` lines of a case's system-out."""
    text = case.system_out or ""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def outcome(case):
    for r in case.result:
        if isinstance(r, (Failure, Error)):
            return type(r).__name__, r.message
    return "passed", None


def run_workflow(flow, bin_dir, repo, work):
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    run = [s["run"] for s in steps if "run" in s and s["run"].lstrip().startswith("reco-cli run")]
    expect(len(run) == 1, "expected one `reco-cli run` step in the workflow")
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    expect(uploads, "the workflow uploads no artifacts")
    shutil.copytree(repo / "recipes", work / "recipes")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", GITHUB_STEP_SUMMARY=str(work / "summary.md"))
    subprocess.run(["bash", "-euo", "pipefail", "-c", run[0]], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
    for pattern in uploads[0]["with"]["path"].split():
        expect(list(work.glob(pattern)), f"the upload step's {pattern} matches nothing after the run")
    junit = re.search(r"--junit\s+(\S+)", run[0])
    expect(junit, "the run step writes no JUnit file")
    return work / junit.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--repo", default=".")
    ap.add_argument("--run", required=True, help="a finished tiny run (for quantize and eval)")
    a = ap.parse_args()
    cli, repo, run = Path(a.cli).resolve(), Path(a.repo).resolve(), Path(a.run)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        junit = run_workflow(workflow(repo / "README.md"), cli.parent, repo, work)
        got = cases(junit)
        gates = [c for s, c in got if s == "gates"]
        stages = [c.name for s, c in got if s == "stages"]
        expect(gates and all(outcome(c)[0] == "passed" for c in gates), "the tiny run's gates are not all passing cases")
        expect(all({"value", "threshold", "artifact"} <= set(props(c)) for c in gates), "a gate case lacks value/threshold")
        expect({"prepare", "train", "distill", "eval"} <= set(stages) and any(n.startswith("quantize") for n in stages),
               f"stages {stages}")
        summary = (work / "summary.md").read_text()
        expect("| gate |" in summary and "| model |" in summary and "Ship:" in summary, "the step summary misses a part")

        recipe = work / "failing.toml"
        recipe.write_text((repo / "recipes/tiny.toml").read_text() + "\n[gates]\nmin_distill_gain = 1.0\n")
        out = subprocess.run([str(cli), "run", str(recipe), "--out", str(work / "failing"), "--junit", str(work / "f.xml"),
                              "--quiet"], capture_output=True, text=True)
        expect(out.returncode == 1, f"an impossible gate: exit {out.returncode}, expected 1")
        failing = [c for s, c in cases(work / "f.xml") if s == "gates" and outcome(c)[0] == "Failure"]
        expect(len(failing) == 1 and failing[0].name == "student_distill_gain_ndcg", "the impossible gate is not the one failure")
        message, p = outcome(failing[0])[1], props(failing[0])
        expect(p["threshold"] == "1" and p["value"] in message and "threshold 1" in message, f"failure message {message!r}, {p}")

        subprocess.run([str(cli), "quantize", "--model", str(run / "teacher"), "--calibration",
                        str(run / "features/calibration.parquet"), "--max-auc-drop", "1", "--max-ndcg-drop", "1",
                        "--out", str(work / "q"), "--junit", str(work / "q.xml"), "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        q = cases(work / "q.xml")
        expect(sorted(c.name for _, c in q) == ["max_auc_drop", "max_ndcg_drop"], f"quantize cases {q}")
        expect(all(outcome(c)[0] == "passed" and props(c)["threshold"] == "1" for _, c in q), "quantize gate cases")

        test = pq.read_table(run / "features/test.parquet")
        label = "label"
        ones = test.filter(pa.compute.equal(test[label], 1))
        pq.write_table(ones, work / "one-class.parquet")
        subprocess.run([str(cli), "eval", str(run / "teacher"), "--data", str(work / "one-class.parquet"),
                        "--junit", str(work / "e.xml"), "--quiet"], check=True, stdout=subprocess.DEVNULL)
        e = cases(work / "e.xml")
        expect(len(e) == 1 and outcome(e[0][1])[0] == "Failure" and "AUC could not be computed" in outcome(e[0][1])[1],
               f"eval on one class: {[outcome(c) for _, c in e]}")
    print(f"check_junit: workflow run as written ({len(gates)} gates, {len(stages)} stages), a failing gate, "
          f"quantize and eval cases parse with junitparser")


if __name__ == "__main__":
    main()
