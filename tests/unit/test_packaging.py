"""pyproject.toml packages the whole shared layer: the wheel built from it holds every module of
layers/shared/llm_platform (proxy and catalog included) and the catalog's JSON, and the installed wheel
works from outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "layers" / "shared"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Given a copy of what the build reads (so the build leaves nothing in the worktree)
    source = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", source)
    for package in ("layers/shared/llm_platform", "local_stack", "openapi_doc"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    # When the wheel is built with the project's own build backend, offline
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("llm_platform-*.whl")
    return built


def test_the_wheel_holds_every_module_and_data_file_of_the_layer(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    layer_files = {
        path.relative_to(LAYER).as_posix()
        for path in LAYER.joinpath("llm_platform").rglob("*")
        if path.is_file() and path.suffix in {".py", ".json"}
    }
    assert {
        "llm_platform/proxy/asgi.py",
        "llm_platform/catalog/models.json",
        "llm_platform/core/clock.py",
    } <= layer_files
    assert layer_files - names == set()
    assert "openapi_doc/document.py" in names and "local_stack/stack.py" in names


def test_the_installed_wheel_serves_the_catalog_and_the_proxy(wheel: Path, tmp_path: Path) -> None:
    # Given the wheel installed into an empty directory
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # When a fresh interpreter outside the repository imports the proxy and reads the catalogs
    probe = (
        "import os, llm_platform, llm_platform.proxy.asgi as asgi\n"
        "from llm_platform.catalog import load\n"
        "assert llm_platform.__file__.startswith(os.environ['PYTHONPATH']), llm_platform.__file__\n"
        "assert load('models.json')['models'] and load('plans.json')\n"
        "asgi.create_app()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    # Then it loads from the installed files
    assert result.returncode == 0, result.stderr
