"""How fast the local fake Twilio answers the real twilio client: the ceiling for any pipeline bench.

    .venv/bin/python bench/fake_twilio.py --messages 2000 --threads 8
    .venv/bin/python bench/fake_twilio.py --smoke          # CI: a few hundred, just proves it runs

Prints messages/second and latency percentiles. If a pipeline benchmark gets close to this figure,
it is measuring the fake, not the pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from channels_hub.providers.twilio_http import make_twilio_client  # noqa: E402
from tests.fakes.twilio_server import FakeTwilio  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="small run for CI")
    args = parser.parse_args()
    total = 200 if args.smoke else args.messages

    with FakeTwilio() as fake:
        client = make_twilio_client(account_sid=fake.account_sid, auth_token=fake.auth_token,
                                    base_url=fake.base_url, timeout=10)

        def send(i: int) -> float:
            started = time.perf_counter()
            client.messages.create(to=f"+3933300{i % 100000:05d}", from_="+15017122661", body=f"bench [{i}]")
            return time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            latencies = sorted(pool.map(send, range(total)))
        elapsed = time.perf_counter() - started
        assert fake.count("bench [") == total, "the fake lost or duplicated messages"

    q = statistics.quantiles(latencies, n=100)
    print(f"fake twilio: {total} creates, {args.threads} threads, {elapsed:.2f} s -> {total / elapsed:.0f} msg/s; "
          f"latency p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
