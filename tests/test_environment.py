"""environment.yml (conda) must list the same dependencies as pyproject.toml (runtime + dev + lab + spark)."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return req.replace(" ", "").lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("dev", "lab", "spark"):
        wanted |= set(project["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    listed = {r for r in pip if not r.startswith("-e")}
    assert {_norm(r) for r in listed} == {_norm(r) for r in wanted}
    assert "-e ." in pip
