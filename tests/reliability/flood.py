"""A hostile client, in a process of its own so that its work does not share the measuring
process's interpreter: forged bearer tokens and `/readyz` probes at fixed rates, on keep-alive
connections. Prints the statuses it got, as JSON.

    python -m tests.reliability.flood --port 8000 --seconds 5 --forged-per-second 254 --readyz-per-second 129
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable


def forged_token() -> str:
    """Half shaped like a key issued before checksums (they must be looked up), half random junk."""
    return "sgk_" + secrets.token_urlsafe(32) if secrets.randbelow(2) else secrets.token_urlsafe(24)


def paced(port: int, per_second: float, seconds: float, request: Callable[[http.client.HTTPConnection], None], seen: Counter) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - started < seconds:
        due = started + sent / per_second
        if due > now:
            time.sleep(due - now)
        sent += 1
        try:
            request(connection)
            response = connection.getresponse()
            response.read()
            seen[response.status] += 1
        except (OSError, http.client.HTTPException):
            seen["error"] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--forged-per-second", type=float, default=254)
    parser.add_argument("--readyz-per-second", type=float, default=129)
    args = parser.parse_args()
    forged: list[Counter] = [Counter(), Counter()]  # one per thread
    readyz: Counter = Counter()

    def forged_lookup(connection: http.client.HTTPConnection) -> None:
        connection.request("GET", "/v1/customers/c0001/segments", headers={"Authorization": f"Bearer {forged_token()}"})

    def probe(connection: http.client.HTTPConnection) -> None:
        connection.request("GET", "/readyz")

    threads = [
        threading.Thread(target=paced, args=(args.port, args.forged_per_second / 2, args.seconds, forged_lookup, seen))
        for seen in forged
    ] + [threading.Thread(target=paced, args=(args.port, args.readyz_per_second, args.seconds, probe, readyz))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = {"forged": sum(forged, Counter()), "readyz": readyz}
    print(json.dumps({name: {str(k): v for k, v in seen.items()} for name, seen in statuses.items()}))


if __name__ == "__main__":
    main()
