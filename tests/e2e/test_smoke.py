"""`bin/smoke`, the post-deploy check of README "Deploy", run against the real `python -m local_stack` (`--url`):
the same steps it runs on a deployed stack (`--stack`), only the account is created in DynamoDB Local."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.stacks import free_port, local_stack_process

REPO = Path(__file__).resolve().parents[2]


def _smoke(url: str, state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "bin/smoke"), "--url", url],
        env={**os.environ, "LOCAL_STACK_STATE_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_smoke_passes_on_a_working_stack_and_fails_clearly_on_a_dead_one(tmp_path: Path) -> None:
    # Given the local stack as `make dev` runs it
    with local_stack_process(tmp_path) as (_, info):
        # When the smoke check runs against it
        result = _smoke(info["apiUrl"], tmp_path)

        # Then every step passed, in order: health, a new account, a key, one paid request, its usage
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line.get("step") for line in lines] == ["health", "account", "key", "request", "usage", None]
        assert all(line["ok"] for line in lines)
        request, usage = lines[3], lines[4]
        assert request["usage"]["completion_tokens"] > 0
        assert float(usage["cost"]) > 0 and usage["lifetime"]["requests"] == 1

    # And against a URL where nothing answers it fails with exit 1, saying so
    dead = _smoke(f"http://127.0.0.1:{free_port()}", tmp_path)
    assert dead.returncode == 1
    assert "FAILED: GET /: no answer" in dead.stderr
