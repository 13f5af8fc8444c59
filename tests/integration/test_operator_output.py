"""What the operator's commands print of a message is the message's text, literally.

Dead letters and carrier texts come from outside: the commands must show Rich markup as
the brackets it is, and write out escape sequences instead of sending them to the
terminal (a screen clear, a window title, a carriage return that hides the line).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, insert

from services.domain.tables import carrier_events, packages, shipments, status_changes
from shared import naming

import harness

PACKER_DLQ, PACKER_QUEUE = naming.dead_letter_queue("packer"), naming.work_queue("packer")
MARKUP = "[bold red]x[/]"
LINK = "[link=https://evil.example]click[/link]"
EMOJI = ":warning:"
CLEAR_SCREEN = "\x1b[2J"
WINDOW_TITLE = "\x1b]0;title\x07"
CARRIAGE_RETURN = "\rfake"
HOSTILE = f"{MARKUP} {LINK} {EMOJI} {CLEAR_SCREEN}{WINDOW_TITLE}{CARRIAGE_RETURN}"
# What the commands must print for HOSTILE's escapes, character for character.
WRITTEN_OUT = "\\x1b[2J\\x1b]0;title\\x07\\rfake"


@pytest.fixture
def pipeline(pipeline):
    """Wide enough that no Rich table wraps a value (a wrapped value would not read as one)."""
    pipeline.env["COLUMNS"] = "2000"
    return pipeline


EVERY_PART = (MARKUP, LINK, EMOJI, WRITTEN_OUT)  # HOSTILE as it must read when printed


def assert_printed_literally(output: str, *texts: str) -> None:
    for control, name in (("\x1b", "ESC"), ("\x07", "BEL"), ("\r", "carriage return"), ("\x9b", "CSI")):
        assert control not in output, f"a {name} from a message reached the terminal:\n{output!r}"
    for text in texts:
        assert text in output, f"{text!r} was not printed as it reads:\n{output}"


def _seed_hostile_dead_letter(pipeline) -> str:
    message_id = f"msg-{MARKUP}-{CLEAR_SCREEN}-{uuid.uuid4().hex[:6]}"
    body = {
        "specversion": "1.0",
        "id": message_id,
        "source": "/hostile",
        "type": f"Type {HOSTILE}",
        "data": {"package_id": f"PKG {HOSTILE}"},
    }
    failed_at = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    pipeline.publisher.publish(
        PACKER_DLQ,
        json.dumps(body).encode(),
        exchange="",
        message_id=message_id,
        event_type="PackagePacked",
        headers={
            naming.HEADER_ATTEMPTS: 1,
            naming.HEADER_SERVICE: "packer",
            naming.HEADER_QUEUE: PACKER_QUEUE,
            naming.HEADER_ROUTING_KEY: "package.packed",
            naming.HEADER_ERROR_CLASS: f"Error{MARKUP}{CLEAR_SCREEN}",
            naming.HEADER_ERROR_MESSAGE: f"reason {HOSTILE}",
            naming.HEADER_FIRST_FAILURE: failed_at,
            naming.HEADER_LAST_FAILURE: failed_at,
            f"x-evil-{MARKUP}{WINDOW_TITLE}": f"value {HOSTILE}",
        },
    )
    return message_id


def _cli(pipeline, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(harness.BIN), *args], env=pipeline.env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert result.returncode in (0, 1), f"oms-shipments {' '.join(args)}: {result.stderr}"
    return result.stdout + result.stderr


def test_dlq_list_show_replay_and_purge_print_a_hostile_dead_letter_literally(pipeline):
    _seed_hostile_dead_letter(pipeline)

    assert_printed_literally(_cli(pipeline, "dlq", "list"), f"Error{MARKUP}\\x1b[2J")
    assert_printed_literally(
        _cli(pipeline, "dlq", "show"),
        *EVERY_PART,
        f"reason {MARKUP}",
        f"PKG {MARKUP}",
        f"x-evil-{MARKUP}\\x1b]0;title\\x07",
        f"Type {MARKUP}",
        "msg-[bold red]x[/]-\\x1b[2J",
    )
    as_json = _cli(pipeline, "dlq", "show", "--json")
    assert "\x1b" not in as_json and json.loads(as_json)[0]["error_message"] == f"reason {HOSTILE}"
    for args, stdin in (
        (("replay", "--queue", "packer", "--dry-run"), None),
        (("purge", "--queue", "packer"), "n\n"),
        (("replay", "--queue", "packer"), None),
    ):
        assert_printed_literally(_cli(pipeline, "dlq", *args, stdin=stdin), *EVERY_PART, f"PKG {MARKUP}")
    assert pipeline.publisher.queue_depth(PACKER_QUEUE) == 1, "the replay must have moved it"

    _seed_hostile_dead_letter(pipeline)
    assert_printed_literally(_cli(pipeline, "dlq", "purge", "--queue", "packer", "--yes"), *EVERY_PART, f"PKG {MARKUP}")
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0, "the purge must have deleted it"


def test_status_prints_a_hostile_package_id_and_carrier_texts_literally(pipeline):
    package_id, shipment_id = f"PKG-{MARKUP}{CLEAR_SCREEN}", f"shp-{uuid.uuid4().hex[:12]}"
    now = datetime.now(timezone.utc)
    engine = create_engine(pipeline.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(packages).values(
                    package_id=package_id,
                    order_number="ORD-1",
                    carrier="sandbox",
                    packed_at=now,
                    packed_event_id=f"evt-{LINK}",
                    first_seen_at=now,
                )
            )
            connection.execute(
                insert(shipments).values(
                    id=shipment_id,
                    package_id=package_id,
                    order_number="ORD-1",
                    carrier="sandbox",
                    status="shipped",
                    sequence=2,
                    tracking_number=f"TRK {MARKUP}{WINDOW_TITLE}",
                    created_at=now,
                    updated_at=now,
                )
            )
            connection.execute(
                insert(status_changes).values(
                    shipment_id=shipment_id,
                    sequence=2,
                    previous_status="pending",
                    status="shipped",
                    carrier_status=f"[blink]{EMOJI}\x1b[5m",
                    changed_at=now,
                    event_id="evt-2",
                )
            )
            connection.execute(
                insert(carrier_events).values(
                    shipment_id=shipment_id,
                    event_key="k1",
                    carrier_status=f"ST{MARKUP}",
                    occurred_at=now,
                    description=f"desc {HOSTILE}",
                    location=f"{LINK}\r\x1b[1A",
                    recorded_at=now,
                )
            )
    finally:
        engine.dispose()

    output = _cli(pipeline, "status", package_id)

    assert_printed_literally(
        output,
        *EVERY_PART,
        f"PKG-{MARKUP}\\x1b[2J",
        f"TRK {MARKUP}\\x1b]0;title\\x07",
        f"[blink]{EMOJI}\\x1b[5m",
        f"ST{MARKUP}",
        f"desc {MARKUP}",
        f"{LINK}\\r\\x1b[1A",
        f"evt-{LINK}",
    )
    assert_printed_literally(_cli(pipeline, "status", f"{package_id}-missing"), f"PKG-{MARKUP}")
