"""The deployment files under configs/ checked offline: every Kubernetes manifest against the
Kubernetes schemas (kubernetes-validate) or, for the extension kinds, their required fields; every
kustomization's references; and every Grafana query's metrics against a live `/metrics`."""
import json
import re
import time
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, MODEL_NAME as M, start_server

K8S = ROOT / "configs" / "k8s"
KUBERNETES_VERSION = "1.33.0"
# Custom resources kubernetes-validate has no schema for: the fields their CRDs require.
REQUIRED = {
    ("inference.networking.k8s.io/v1", "InferencePool"): [("spec", "selector", "matchLabels"), ("spec", "targetPorts"), ("spec", "endpointPickerRef", "name")],
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceObjective"): [("spec", "poolRef", "name")],
    ("keda.sh/v1alpha1", "ScaledObject"): [("spec", "scaleTargetRef", "name"), ("spec", "triggers")],
}


def manifests():
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                yield path, doc


@pytest.mark.parametrize("path,doc", list(manifests()), ids=lambda x: str(x.relative_to(K8S)) if isinstance(x, Path) else "")
def test_every_manifest_is_valid(path, doc):
    kind = (doc["apiVersion"], doc["kind"])
    if kind in REQUIRED:
        for field in REQUIRED[kind]:
            node = doc
            for key in field:
                assert isinstance(node, dict) and key in node, f"{path}: {kind[1]} needs {'.'.join(field)}"
                node = node[key]
            assert node, f"{path}: {'.'.join(field)} is empty"
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomizations_reference_what_exists_and_select_the_pods():
    selectors = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        for ref in yaml.safe_load(kustomization.read_text())["resources"]:
            target = (kustomization.parent / ref).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kustomization}: {ref} does not exist"
            assert target.is_dir() or target.parent == kustomization.parent, f"{kustomization}: {ref} is a file outside its folder (kustomize refuses it)"
    deployment = next(d for _, d in manifests() if d["kind"] == "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for _, doc in manifests():
        selector = doc.get("spec", {}).get("selector")
        if isinstance(selector, dict):
            selectors.add(doc["kind"])
            wanted = selector.get("matchLabels", selector)
            assert all(labels.get(k) == v for k, v in wanted.items()), f"{doc['kind']} selects {wanted}, the pods are {labels}"
    assert {"Service", "PodDisruptionBudget", "InferencePool"} <= selectors
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    drain = int(args[args.index("--drain-timeout") + 1])
    assert drain < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], "the drain must end inside the grace period"


def metric_names(expr):
    # Identifiers followed by `{`, `[` or `)` that are metric names, not functions or labels.
    return {m for m in re.findall(r"\b((?:rill_|vllm:)[a-zA-Z0-9_:]+)", expr)}


def test_every_dashboard_query_reads_metrics_a_live_server_exports():
    dashboard = json.loads((ROOT / "configs" / "grafana" / "rill-dashboard.json").read_text())
    wanted = set()
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no rill metric in {target['expr']}"
            wanted |= names
    wanted |= metric_names(json.dumps(dashboard["templating"]))
    s = start_server()
    try:
        # Enough traffic for every series to exist: requests, a shared prefix, drift's windows.
        for i in range(24):
            body = json.dumps({"model": M, "prompt": "The same long prefix for the cache, then " + str(i), "max_tokens": 2}).encode()
            req = urllib.request.Request(s["url"] + "/v1/completions", body, {"Content-Type": "application/json"})
            assert urllib.request.urlopen(req, timeout=60).status == 200
        deadline = time.time() + 10
        while True:
            text = urllib.request.urlopen(s["url"] + "/metrics", timeout=10).read().decode()
            exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
            missing = sorted(n for n in wanted if n not in exported)
            if not missing or time.time() > deadline:
                break
            time.sleep(0.5)
        assert not missing, f"the dashboard queries metrics /metrics does not export: {missing}"
    finally:
        s["proc"].terminate()
        s["proc"].wait(timeout=30)


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_the_container_files_lint_clean_and_keep_their_promises(name):
    # No container builder runs on the CI machines: the files are linted (hadolint) and read.
    import subprocess
    import sys

    path = ROOT / "configs" / "docker" / name
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run([str(hadolint), str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = path.read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2, "multi-stage"
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/health" in text and '"/models"' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "/target" in ignored and "/models" in ignored, "the build context must not carry build outputs or weights"
