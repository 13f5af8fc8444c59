"""``oms-shipments publish``: validate every line by the contract, then publish with confirms."""

from __future__ import annotations

from contracts import EventRejected, parse_event, routing_key_for
from shared.broker import Publisher, Unroutable, connect, events_exchange


class EventsReturned(RuntimeError):
    """Some published events were returned by the broker (no queue bound): they reached no one."""

    def __init__(self, published: int, returned: list[tuple[int, str]]):
        self.published, self.returned = published, returned
        lines = "; ".join(f"line {number}: {reason}" for number, reason in returned)
        super().__init__(
            f"{len(returned)} of {published + len(returned)} events were returned by the broker, "
            f"no queue is bound for them ({lines}); declare the topology "
            f"(`oms-shipments topology declare`) and publish those lines again"
        )


def publish_lines(amqp_url: str, lines: list[str]) -> tuple[int, list[tuple[int, str]]]:
    """(published, invalid lines); raises EventsReturned, after publishing the rest, when any was returned."""
    events, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = parse_event(line.encode())
        except EventRejected as exc:
            errors.append((number, exc.reason))
            continue
        events.append((number, event, line.encode()))
    if errors:
        return 0, errors
    published, returned = 0, []
    with connect(amqp_url) as connection:
        # Upstream systems declare nothing; declaring our own exchange makes a first publish safe.
        events_exchange()(connection.default_channel).declare()
        publisher = Publisher(connection)
        for number, event, body in events:
            routing_key = routing_key_for(event.type, event.data)
            try:
                publisher.publish(body, routing_key=routing_key, message_id=event.id, event_type=event.type)
            except Unroutable:
                returned.append((number, f"{event.type} {event.id} under {routing_key!r}"))
                continue
            published += 1
    if returned:
        raise EventsReturned(published, returned)
    return published, []
