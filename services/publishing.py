"""``oms-shipments publish``: validate every line by the contract, then publish with confirms."""
from __future__ import annotations

from contracts import EventRejected, parse_event, routing_key_for
from shared.broker import Publisher, connect, events_exchange


def publish_lines(amqp_url: str, lines: list[str]) -> tuple[int, list[tuple[int, str]]]:
    events, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(line.encode())
        except EventRejected as exc:
            errors.append((number, exc.reason))
            continue
        events.append((event, line.encode()))
    if errors:
        return 0, errors
    with connect(amqp_url) as connection:
        # Upstream systems declare nothing; declaring our own exchange makes a first publish safe.
        events_exchange()(connection.default_channel).declare()
        publisher = Publisher(connection)
        for event, body in events:
            publisher.publish(body, routing_key=routing_key_for(event.type, event.data),
                              message_id=event.id, event_type=event.type)
    return len(events), []
