"""envs/*.yaml (conda envs for --sdm conda) must list exactly pyproject's requirement strings."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_ONLY = {"snakemake", "packaging"}  # needed by the snakemake process, not inside job environments


def _name(requirement: str) -> str:
    for sep in "<>=![ ;":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r): r for r in project["dependencies"]}


def _env_requirements(path: Path) -> list[str]:
    spec = yaml.safe_load(path.read_text())
    pip_sections = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    return [r for section in pip_sections for r in section]


def test_every_env_requirement_is_pyprojects_exact_string():
    project = _pyproject_requirements()
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        for requirement in _env_requirements(env):
            assert project.get(_name(requirement)) == requirement, f"{env.name}: {requirement} differs from pyproject"


def test_envs_together_cover_pyproject():
    covered = {_name(r) for env in (ROOT / "envs").glob("*.yaml") for r in _env_requirements(env)}
    missing = set(_pyproject_requirements()) - covered - WORKFLOW_ONLY
    assert not missing, f"pyproject requirements in no conda env: {sorted(missing)}"


def test_rules_reference_existing_envs():
    for rule_file in sorted((ROOT / "rules").glob("*.smk")):
        for line in rule_file.read_text().splitlines():
            if line.strip().startswith('"../envs/'):
                assert (ROOT / "rules" / line.strip().strip('",')).resolve().is_file(), line
