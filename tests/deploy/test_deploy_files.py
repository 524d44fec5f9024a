"""Every file in deploy/ is parsed and checked: YAML loads with the fields the tools require, the
sbatch script passes `bash -n`, Dockerfiles copy only files that exist, commands use real options."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from jobs import predict_catalogue

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def test_every_file_is_covered():
    files = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert files == {
        "README.md",
        "docker/Dockerfile.cpu",
        "docker/Dockerfile.cuda",
        "slurm/jobqueue.yaml",
        "slurm/local_cluster.sh",
        "slurm/predict_catalogue.sbatch",
        "kubernetes/daskcluster.yaml",
        "kubernetes/daskjob.yaml",
        "kubernetes/pvc.yaml",
        "kubernetes/values.yaml",
    }


def _containers(pod_spec):
    containers = pod_spec["containers"]
    assert containers and all(c["image"] and c["name"] for c in containers)
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    return containers


def _check_cluster_spec(spec):
    workers = _containers(spec["worker"]["spec"])
    assert spec["worker"]["replicas"] >= 1
    assert any(
        c["command"][:3] == ["dask", "cuda", "worker"] or c["command"][:2] == ["dask", "worker"]
        for c in workers
    )
    scheduler = _containers(spec["scheduler"]["spec"])
    assert scheduler[0]["command"] == ["dask", "scheduler"]
    ports = {p["name"]: p["port"] for p in spec["scheduler"]["service"]["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}


def test_dask_operator_manifests():
    cluster = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    _check_cluster_spec(cluster["spec"])
    job = yaml.safe_load((DEPLOY / "kubernetes" / "daskjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("kubernetes.dask.org/v1", "DaskJob")
    _check_cluster_spec(job["spec"]["cluster"]["spec"])
    (container,) = _containers(job["spec"]["job"]["spec"])
    script = " ".join(container["args"])
    _check_job_options(script)
    pvc = yaml.safe_load((DEPLOY / "kubernetes" / "pvc.yaml").read_text())
    assert pvc["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in pvc["spec"]["accessModes"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["job"]["spec"]["volumes"]}
    assert claims == {pvc["metadata"]["name"]}
    values = yaml.safe_load((DEPLOY / "kubernetes" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsNonRoot"] is True


def _check_job_options(text):
    """Every --option after the last `jobs.predict_catalogue` (the command) is an option of that job."""
    known = {a for action in predict_catalogue.build_parser()._actions for a in action.option_strings}
    used = set(re.findall(r"(--[a-z][a-z-]+)", text.rsplit("jobs.predict_catalogue", 1)[1]))
    assert used and used <= known, used - known


def test_slurm_files():
    conf = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    for key in ("cores", "processes", "memory", "walltime"):
        assert conf[key]
    script = DEPLOY / "slurm" / "predict_catalogue.sbatch"
    for name in ("predict_catalogue.sbatch", "local_cluster.sh"):
        subprocess.run(["bash", "-n", str(DEPLOY / "slurm" / name)], check=True)
    text = script.read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH --gres=gpu" in text
    _check_job_options(text)


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfiles(name):
    text = (DEPLOY / "docker" / name).read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert ":" in base and not base.endswith(":latest")  # a pinned base image
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        sources = [w for w in line.split() if not w.startswith("--")][:-1]
        for src in sources:
            assert (REPO / src).exists(), f"{name} copies {src}, which does not exist"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] != "root"
    assert re.search(r"tensorflow[^ \"]*==\d", text)  # pinned versions
    assert "SECRET" not in text.upper() and "PASSWORD" not in text.upper()
