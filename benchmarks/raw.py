"""The raw limits: pika and psycopg with nothing of ours in between.

The same broker, database, message bodies and persistence as the services: durable
queues, persistent messages, one table row per message.
"""

from __future__ import annotations

import time

import pika
import psycopg

from benchmarks.infra import Environment, wait_for

RAW_QUEUE = "bench.raw"
PROPERTIES = pika.BasicProperties(delivery_mode=2, content_type="application/cloudevents+json")


def _channel(env: Environment):
    connection = env.broker()
    channel = connection.channel()
    channel.queue_declare(RAW_QUEUE, durable=True)
    return connection, channel


def fill(env: Environment, bodies: list[bytes]) -> None:
    """Puts the bodies in the raw queue (untimed), as an upstream backlog."""
    connection, channel = _channel(env)
    try:
        channel.queue_purge(RAW_QUEUE)
        for body in bodies:
            channel.basic_publish("", RAW_QUEUE, body, PROPERTIES)
    finally:
        connection.close()
    wait_for(lambda: env.queue_depth(RAW_QUEUE) == len(bodies), 60, "the raw queue to fill")


def publish_rate(env: Environment, bodies: list[bytes], confirms: bool) -> float:
    """Messages/s published to a durable queue; with confirms, waiting for each one."""
    connection, channel = _channel(env)
    try:
        channel.queue_purge(RAW_QUEUE)
        if confirms:
            channel.confirm_delivery()
        started = time.perf_counter()
        for body in bodies:
            channel.basic_publish("", RAW_QUEUE, body, PROPERTIES)
        if not confirms:
            # Until the broker has them all: a flushed socket is not a published message.
            channel.queue_declare(RAW_QUEUE, passive=True)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    wait_for(lambda: env.queue_depth(RAW_QUEUE) == len(bodies), 60, "the raw publishes to land")
    return len(bodies) / elapsed


def consume_insert_rate(env: Environment, bodies: list[bytes], commit_every: int) -> float:
    """Messages/s consumed, INSERTed and committed every ``commit_every``, acked after each commit."""
    fill(env, bodies)
    with psycopg.connect(env.database_url) as database:
        database.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, body bytea NOT NULL)")
        database.execute("TRUNCATE bench_raw")
        database.commit()
        connection, channel = _channel(env)
        channel.basic_qos(prefetch_count=max(200, 2 * commit_every))
        state = {"count": 0, "uncommitted": 0, "started": None}

        def on_message(ch, method, _properties, body) -> None:
            if state["started"] is None:
                state["started"] = time.perf_counter()
            database.execute("INSERT INTO bench_raw (body) VALUES (%s)", (body,))
            state["count"] += 1
            state["uncommitted"] += 1
            if state["uncommitted"] == commit_every or state["count"] == len(bodies):
                database.commit()
                ch.basic_ack(method.delivery_tag, multiple=True)
                state["uncommitted"] = 0
                if state["count"] == len(bodies):
                    ch.stop_consuming()

        channel.basic_consume(RAW_QUEUE, on_message)
        try:
            channel.start_consuming()
        finally:
            connection.close()
        elapsed = time.perf_counter() - state["started"]
        database.execute("DROP TABLE bench_raw")
        database.commit()
    return len(bodies) / elapsed


def baselines(env: Environment, bodies: list[bytes], per_message_count: int, publish_count: int) -> dict[str, float]:
    results = {
        "consume_commit_100": consume_insert_rate(env, bodies, commit_every=100),
        "consume_commit_1": consume_insert_rate(env, bodies[:per_message_count], commit_every=1),
        "publish_confirm_each": publish_rate(env, bodies[:publish_count], confirms=True),
        "publish_no_confirm": publish_rate(env, bodies, confirms=False),
    }
    env.purge(RAW_QUEUE)
    return results
