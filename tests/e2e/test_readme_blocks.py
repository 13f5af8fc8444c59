"""Every command block of the README and the quickstart runs as written.

Each document's ```sh blocks are run in order, in one shell, as a person pasting them into
one terminal would: in a copy of the project (its files as they are, the installed
``.venv`` linked in, since installing it again would take the package index), with no
``OMS_*`` variable set and without ``.venv/bin`` on the PATH. Only the two URLs the blocks
export are replaced, by a vhost and a not yet existing database of the test's own, so
``db upgrade --create`` really creates it. What a block starts in the background is
stopped by the block itself (``kill $(jobs -p)``), and by the test whatever happens.
``make test`` runs as written too, on the selection the Makefile's ``PYTEST_ARGS`` names
(the whole suite from inside the suite would run this test again).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).parents[2]
DOCUMENTS = ("README.md", "docs/quickstart.md")
LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/oms"
MAKE_TEST_SELECTION = "tests/unit/test_docs.py"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def sh_blocks(document: str) -> list[str]:
    return SH_BLOCK.findall((ROOT / document).read_text())


def _copy_of_the_project(destination: Path) -> Path:
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)  # times kept: make sees the install up to date
    (destination / ".venv").symlink_to(ROOT / ".venv")
    up_to_date = subprocess.run(["make", "-q", "install"], cwd=destination, capture_output=True)
    # Otherwise make would reinstall the shared .venv from this copy, which is deleted afterwards.
    assert up_to_date.returncode == 0, ".venv is older than pyproject.toml: run `make install` first"
    return destination


def _person_environment() -> dict[str, str]:
    """A shell as a new user has it: no OMS_* setting, no virtualenv active."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {
        key: value
        for key, value in os.environ.items()
        if not (key.startswith("OMS_") and not key.startswith("OMS_TEST_")) and key != "VIRTUAL_ENV"
    }
    env["PATH"] = os.pathsep.join(
        part
        for part in env.get("PATH", "").split(os.pathsep)
        if part and Path(part).resolve() != Path(venv_bin).resolve()
    )
    env["PYTEST_ARGS"] = MAKE_TEST_SELECTION
    return env


def _stop_the_group(group: int, timeout_s: float = 120) -> None:
    """Whatever the blocks left running: SIGTERM, then SIGKILL after the drain had its time."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(group, signal.SIGKILL)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_document_has_command_blocks_that_use_the_local_urls_the_test_replaces(document):
    script = "\n".join(sh_blocks(document))

    assert script.strip(), f"{document} has no ```sh block"
    assert LOCAL_AMQP_URL in script and LOCAL_DATABASE_URL in script, "the blocks point elsewhere than the test"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_block_of_the_document_runs_as_written_against_the_local_rabbitmq_and_postgresql(
    document, tmp_path, amqp_url
):
    database = f"oms_test_{os.urandom(5).hex()}"
    script = "\n".join(sh_blocks(document))
    script = script.replace(LOCAL_AMQP_URL, amqp_url).replace(LOCAL_DATABASE_URL, harness.database_url(database))
    checkout = _copy_of_the_project(tmp_path / "checkout")
    (checkout / "blocks.sh").write_text(script)
    log_path = tmp_path / "blocks.log"

    with open(log_path, "wb") as log:
        shell = subprocess.Popen(
            ["bash", "-e", "blocks.sh"],
            cwd=checkout,
            env=_person_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = shell.wait(timeout=600)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _stop_the_group(shell.pid)
            harness.drop_database(database)

    output = log_path.read_text(errors="replace")
    assert returncode == 0, f"{document}'s blocks ended with {returncode}:\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    assert "published 2 events" in output and "PKG-1001" in output, output[-6000:]
    assert "created the database" in output, "db upgrade --create made the test's database"
