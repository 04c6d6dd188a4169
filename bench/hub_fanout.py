"""Hub fan-out: one channel, N in-process subscribers, 100-byte messages.

Measures the queue work of the hub core alone (no sockets): a publisher
greenlet publishes bursts of messages to one channel; each subscriber has its
own outbox drained by its own writer greenlet, which counts and discards what
it takes (a door would write it to its socket). Prints deliveries per second
(messages placed in outboxes and taken out by writers) and the latency from
the start of ``publish`` to the message being in the last subscriber's outbox.

Usage: python bench/hub_fanout.py [--subscribers 1000] [--messages 20000]
       [--burst 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import gevent

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from channelstream.hub import ChannelConfig, Hub, HubConfig, Message


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


def run(subscribers: int, messages: int, burst: int) -> dict:
    hub = Hub(
        HubConfig(
            default_channel=ChannelConfig(history_size=1000),
            outbox_size=max(1000, burst * 2),
            outbox_hard_limit=max(10000, burst * 20),
        )
    )
    hub.start()
    received = [0]

    def writer(outbox):
        while True:
            outbox.wait()
            batch = outbox.drain()
            if not batch and outbox.closed:
                return
            received[0] += len(batch)

    outboxes = []
    writers = []
    for i in range(subscribers):
        outbox = hub.open_outbox(name=f"sub{i}")
        hub.subscribe(outbox, "bench")
        outboxes.append(outbox)
        writers.append(gevent.spawn(writer, outbox))
    gevent.sleep(0)  # let writers reach their first wait

    body = "x" * 100
    latencies: list[float] = []
    perf = time.perf_counter
    publish = hub.publish
    started = perf()
    sent = 0
    while sent < messages:
        for _ in range(min(burst, messages - sent)):
            t0 = perf()
            publish(Message("bench", body, size=100))
            latencies.append(perf() - t0)
            sent += 1
        gevent.sleep(0)  # writers drain the burst
    while received[0] < messages * subscribers:
        gevent.sleep(0)
    elapsed = perf() - started
    dropped = hub.stats()["dropped"]
    hub.stop()
    gevent.joinall(writers, timeout=5)
    latencies.sort()
    return {
        "subscribers": subscribers,
        "messages": messages,
        "burst": burst,
        "deliveries": received[0],
        "dropped": dropped,
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(received[0] / elapsed),
        "publish_to_last_outbox_p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "publish_to_last_outbox_p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args.subscribers, args.messages, args.burst)
    conditions = {
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores_used": 1,
        "message_bytes": 100,
        "work": "publish -> outbox -> writer greenlet drain (no sockets)",
    }
    if args.json:
        print(json.dumps({"result": result, "conditions": conditions}))
        return
    print("hub fan-out:", ", ".join(f"{k}={v}" for k, v in conditions.items()))
    for key, value in result.items():
        print(f"  {key:32} {value}")


if __name__ == "__main__":
    main()
