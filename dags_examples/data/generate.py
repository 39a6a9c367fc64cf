"""Generate the example shop data (customers and orders as CSV) used by the example pipelines.

    python dags_examples/data/generate.py [--out DIR] [--customers N] [--orders N] [--seed S]

With the defaults it rewrites the small files shipped next to it, byte for byte; larger sizes make
data for trying a standalone cluster. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from pathlib import Path

REGIONS = ("north", "south", "east", "west")
PRODUCTS = (("widget", 4.5), ("gadget", 12.0), ("gizmo", 27.25), ("doohickey", 2.75))
FIRST_DAY = dt.date(2024, 1, 1)
DAYS = 31


def generate(out: Path, customers: int = 40, orders: int = 600, seed: int = 7) -> None:
    """Write ``customers.csv`` and ``orders.csv`` under ``out`` (deterministic for a given seed)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "customers.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["customer_id", "name", "region", "signup_date"])
        for i in range(1, customers + 1):
            signup = FIRST_DAY - dt.timedelta(days=rng.randrange(1, 700))
            writer.writerow([i, f"customer_{i:04d}", REGIONS[i % len(REGIONS)], signup.isoformat()])
    with (out / "orders.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["order_id", "customer_id", "order_date", "product", "quantity", "amount"])
        for i in range(1, orders + 1):
            product, price = rng.choice(PRODUCTS)
            quantity = rng.randint(1, 5)
            day = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS))
            customer = rng.randint(1, customers)
            writer.writerow([i, customer, day.isoformat(), product, quantity, f"{price * quantity:.2f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "shop")
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    generate(args.out, args.customers, args.orders, args.seed)
    print(f"wrote {args.out}/customers.csv and {args.out}/orders.csv")


if __name__ == "__main__":
    main()
