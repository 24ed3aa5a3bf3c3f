"""The distribution ships every package folder: rnnbench/, and backends/ as rnnbench.backends."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"rnnbench.backends"} | {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "rnnbench").rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject's packages: {sorted(found - listed)}"
    assert config["package-dir"]["rnnbench.backends"] == "backends"


def test_extras_cover_every_backend() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    import rnnbench as rb

    for name in rb.list_backends():
        extra = rb.backend_info(name).extra
        assert extra is None or extra in extras, f"backend {name} names a missing extra {extra}"
    assert project["dependencies"] == ["numpy>=1.24"]  # the core depends on NumPy only


def test_the_seed_record_copies_agree() -> None:
    """The repo stands alone with its own copies; they must not drift from the project's seed."""
    shipped = (ROOT / "rnnbench" / "data" / "seed_notebook.json").read_bytes()
    assert (ROOT / "tests" / "data" / "seed_notebook.json").read_bytes() == shipped
    golden = ROOT.parent / "shared" / "golden" / "seed_notebook.json"
    if golden.is_file():  # beside a checkout of the project's main repo
        assert golden.read_bytes() == shipped
