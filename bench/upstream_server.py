"""The built-in test upstream (local_stack.upstream) in a process of its own, for the benchmark:
`python bench/upstream_server.py PORT`. No delay between stream chunks: the bench measures the proxies."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_stack.upstream import build_upstream  # noqa: E402


def main() -> None:
    app = build_upstream(name="bench", chunk_delay=0)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
