"""m_split: one stream in, several out (mflow's tool); see :mod:`channelstream.mflow.split`.

Usage: ``m_split source streams...`` or ``m_split -c config.json``

Positional form (mflow's): the source is connected (bound for
``tcp://*:port``) in PULL mode, every output stream is bound in PUSH mode,
queue_size 100. The config form takes mflow's JSON (source and streams with
address, mode, queue_size, modulo; ``tcp://*:port`` binds, other addresses
connect).

Multipart messages are forwarded whole, modulo included; a full output
loses messages (counted) rather than stalling the others. One output without
modulo is forwarded by libzmq's proxy (no Python per message; the summary
then counts parts). Ctrl-C prints the
summary (messages in, and per output sent and dropped) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import zmq

from ..split import (
    BIND,
    PULL,
    PUSH,
    ConfigError,
    Endpoint,
    Output,
    ProxySplitter,
    Splitter,
    conn_type_for,
    open_socket,
    parse_config,
)
from ._common import TICK_MS, Progress, Stop, megabytes, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m_split", description="Stream split utility")
    p.add_argument("-c", "--config", help="Configuration file (JSON)")
    p.add_argument("source", nargs="?", help='Source address - format "tcp://<address>:<port>"')
    p.add_argument("streams", nargs="*", help='Streams to generate - "tcp://<address>:<port>"')
    return p


def load(args: argparse.Namespace, usage: argparse.ArgumentParser) -> tuple[Endpoint,
                                                                             list[Endpoint]]:
    if args.config:
        if args.source or args.streams:
            usage.error("give either -c CONFIG or source and streams, not both")
        try:
            with open(args.config, encoding="utf-8") as f:
                config = json.load(f)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{args.config} is not JSON: {exc}") from None
        return parse_config(config)
    if not args.source or not args.streams:
        usage.error("insufficient arguments given")
    source = Endpoint(args.source, PULL, conn_type=conn_type_for(args.source))
    return source, [Endpoint(address, PUSH, conn_type=BIND) for address in args.streams]


def _main(args: argparse.Namespace, usage: argparse.ArgumentParser) -> int:
    source_endpoint, endpoints = load(args, usage)
    stop = Stop()
    context = zmq.Context()
    sockets = []
    try:
        try:
            source = open_socket(context, source_endpoint)
            sockets.append(source)
            outputs = []
            for endpoint in endpoints:
                outputs.append(Output(endpoint, open_socket(context, endpoint)))
                sockets.append(outputs[-1].socket)
        except zmq.ZMQError as exc:
            failed = endpoints[len(sockets) - 1].address if sockets else source_endpoint.address
            raise ConfigError(f"cannot open {failed}: {exc}") from None
        print(f"Splitting {source_endpoint.address} to "
              f"{', '.join(e.address for e in endpoints)}", flush=True)
        progress = Progress()
        start = time.monotonic()
        if len(outputs) == 1 and outputs[0].modulo == 1:
            splitter = ProxySplitter(context, source, outputs[0])
            try:
                while not stop.requested:
                    time.sleep(TICK_MS / 1000)
                    if progress.enabled:
                        progress.update(splitter.counters()["received"])
            finally:
                splitter.stop()
                progress.done()
        else:
            source.setsockopt(zmq.RCVTIMEO, TICK_MS)
            splitter = Splitter(source, outputs)

            def should_stop() -> bool:
                progress.update(splitter.received)
                return stop.requested

            try:
                splitter.run(should_stop if progress.enabled else stop)
            finally:
                progress.done()
        elapsed = time.monotonic() - start
    finally:
        for socket in sockets:
            socket.close(linger=0 if stop.requested else 1000)
        context.term()
    counters = splitter.counters()
    unit = counters["unit"]
    note = " (libzmq's proxy: one output, no modulo; it counts parts)" if unit == "parts" else ""
    print(f"Split {counters['received']} {unit} ({megabytes(counters['bytes_received'])}) "
          f"in {elapsed:.3f} s{note}.")
    for output in counters["outputs"]:
        print(f"  {output['address']}: {output['sent']} {'parts ' if unit == 'parts' else ''}"
              f"sent, {output['dropped']} dropped")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    usage = parser()
    args = usage.parse_args(argv)
    return run("m_split", lambda: _main(args, usage))


if __name__ == "__main__":
    sys.exit(main())
