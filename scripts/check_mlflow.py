"""`run` with `[track]` against a real MLflow tracking server (`mlflow server`, SQLite backend,
local artifact root, on 127.0.0.1), checked with MLflow's own Python client.

1. The tiny recipe with `[track] mlflow = URI` (a user and password in it, which must never be
   shown, stored or logged), `register = ...`: the MLflow run that
   `tracking.json` names holds the resolved recipe as params, every number of `report.json`'s
   eval table and gates as metrics (equal to the report's), `report.json` itself as an artifact
   (byte for byte) and the recommended model's files, one child run per stage, and a new
   version of the registered model whose tags carry the model's content sha256 and kind.
2. An unreachable server: a warning and exit 0 (the run's files on disk); with
   `track.required = true`, exit 2 with one line, the run's files still on disk.
3. A registered-model name MLflow refuses (`a/b`): exit 2 before anything runs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient


def expect(ok, what):
    if not ok:
        raise SystemExit(f"check_mlflow: {what}")


def flat(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            flat(f"{prefix}.{k}" if prefix else k, x, out)
    elif v is not None:
        out[prefix] = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def run(cli, recipe, out, work):
    return subprocess.run([cli, "run", str(recipe), "--out", str(out), "--quiet"], cwd=work, capture_output=True,
                          text=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--repo", default=".")
    a = ap.parse_args()
    tiny = (Path(a.repo) / "recipes/tiny.toml").read_text()
    client = MlflowClient(tracking_uri=a.uri)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        recipe = work / "tracked.toml"
        # With a user and password in the URL (the server ignores them): never shown or stored.
        secret = "s3cret-token"
        uri = a.uri.replace("://", f"://ci:{secret}@", 1)
        recipe.write_text(tiny + f'\n[track]\nmlflow = "{uri}"\nexperiment = "reco-cli-ci"\nregister = "reco-tiny"\n')
        o = subprocess.run([a.cli, "run", str(recipe), "--out", str(work / "out")], cwd=work, capture_output=True, text=True)
        expect(o.returncode == 0, f"tracked run exit {o.returncode}: {o.stderr}")
        expect(secret not in o.stderr + o.stdout and secret not in (work / "out/tracking.json").read_text(),
               "the URL's password was shown or stored")
        report = json.loads((work / "out/report.json").read_text())
        tracking = json.loads((work / "out/tracking.json").read_text())
        r = client.get_run(tracking["run_id"])
        expect(r.info.status == "FINISHED", f"run status {r.info.status}")
        # Params: the resolved recipe (as `reco-cli run` resolved it: report.json does not hold it,
        # so compare the keys the recipe file sets).
        for key, want in [("name", "tiny"), ("seed", "7"), ("data.users", "150"), ("train.hidden", "[32,16]")]:
            expect(r.data.params.get(key) == want, f"param {key} = {r.data.params.get(key)!r}, expected {want!r}")
        expect(not any(secret in v for v in r.data.params.values()), "the URL's password was logged as a param")
        m = r.data.metrics
        n = 0
        for model in report["eval"]["models"]:
            for key, field in [("auc", "auc"), ("ndcg_at_10", "ndcg@10"), ("logloss", "logloss")]:
                v = model.get(field)
                if v is None:
                    expect(f"{key}.{model['name']}" not in m, f"unmeasured {key}.{model['name']} was logged")
                else:
                    k = f"{key}.{model['name']}"
                    expect(m.get(k) == v, f"{k}: {m.get(k)} != {v}")
                    n += 1
        for g in report["gates"]:
            key = f"gate.{g['name']}.{g['artifact']}"
            expect(g["value"] is None or m[key] == g["value"], f"{key}: {m.get(key)} != {g['value']}")
            expect(m[f"gate_passed.{g['name']}.{g['artifact']}"] == (1.0 if g["passed"] else 0.0), f"gate_passed {key}")
        expect(m["run_passed"] == (1.0 if report["passed"] else 0.0), "run_passed")
        files = {f.path for f in client.list_artifacts(r.info.run_id)}
        expect({"report.json", "report.md", "report.html", "model"} <= files, f"artifacts {files}")
        rec = report["recommended"]
        model_files = {f.path for f in client.list_artifacts(r.info.run_id, f"model/{rec}")}
        expect(f"model/{rec}/manifest.json" in model_files and f"model/{rec}/model.safetensors" in model_files,
               f"model files {model_files}")
        local = Path(client.download_artifacts(r.info.run_id, "report.json", str(work)))
        expect(local.read_bytes() == (work / "out/report.json").read_bytes(), "report.json differs from the uploaded one")
        children = client.search_runs([r.info.experiment_id], f"tags.mlflow.parentRunId = '{r.info.run_id}'")
        expect(sorted(c.info.run_name for c in children) == sorted(s["name"] for s in report["stages"]), "child runs")
        name, version = tracking["registered"]
        mv = client.get_model_version(name, version)
        inspect = json.loads(subprocess.run([a.cli, "inspect", str(work / "out" / rec), "--json"], capture_output=True,
                                            text=True, check=True).stdout)
        expect(mv.run_id == r.info.run_id and mv.tags.get("reco_cli.content_sha256") == inspect["content_sha256"],
               f"model version {mv}")

        # An unreachable server: warning, or exit 2 with track.required; the files stay.
        dead = "http://127.0.0.1:9"
        recipe.write_text(tiny + f'\n[track]\nmlflow = "{dead}"\n')
        o = run(a.cli, recipe, work / "dead", work)
        expect(o.returncode == 0 and "warning: MLflow tracking" in o.stderr and (work / "dead/report.json").is_file(),
               f"unreachable, not required: exit {o.returncode}, {o.stderr!r}")
        recipe.write_text(tiny + f'\n[track]\nmlflow = "{dead}"\nrequired = true\n')
        o = run(a.cli, recipe, work / "dead2", work)
        lines = o.stderr.strip().splitlines()
        expect(o.returncode == 2 and len(lines) == 1 and "track.required" in lines[0] and (work / "dead2/report.json").is_file(),
               f"unreachable, required: exit {o.returncode}, {o.stderr!r}")
        recipe.write_text(tiny + '\n[track]\nmlflow = "http://127.0.0.1:9"\nregister = "a/b"\n')
        o = run(a.cli, recipe, work / "bad", work)
        expect(o.returncode == 2 and "track.register" in o.stderr and not (work / "bad").exists(), f"bad name: {o.stderr!r}")
    print(f"check_mlflow: run {r.info.run_id}: {len(r.data.params)} params, {len(m)} metrics ({n} eval numbers equal "
          f"report.json), {len(files)} artifact entries, {len(children)} stage runs, {name} version {version}; "
          f"unreachable server and a refused name handled")


if __name__ == "__main__":
    main()
