"""Deterministic sample data for the source schema, bulk-loaded through COPY.

Columns are generated vectorised (numpy + Arrow, no per-row Python), written as CSV by Arrow
and streamed into ``COPY ... FROM STDIN`` in chunks, so 1M vouchers load in seconds. The data
is realistically messy on purpose: NULLs, unicode, commas/quotes/newlines, text starting with
``=``, ``+``, ``-``, ``@``, metadata with varying keys, one tenant with rows another lacks.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter

from entities.tables import metadata as source_metadata

CHUNK_ROWS = 200_000
EPOCH_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
YEAR_US = 365 * 86_400 * 1_000_000

MESSY_TEXT = [
    "Summer sale, 10% off",
    'Say "hello" to savings',
    "multi\nline\nnote",
    "Zürich café ☕",
    "東京 タワー",
    "=1+1",
    "+49 30 1234567",
    "-5 EUR off",
    "@admin",
    '=HYPERLINK("http://example.com","click")',
    "\ttab-led",
    "plain text",
    "",
    "emoji 🎉 party",
    'comma, "quote" and\r\nCRLF',
    "O'Brien & Söhne",
]
REGIONS = ["NA", "UK", "EU", "APAC"]
CHANNELS = ["web", "pos", "app", "email"]


def create_source_schema(engine: sa.Engine) -> None:
    """Create the sample application tables if missing (the real app owns them in production).

    A sample database made by an older version gets the columns and indexes added since
    (columns nullable, so tables with rows take them); nothing is dropped or retyped.
    """
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242002)"))
        source_metadata.create_all(conn)
        inspector = sa.inspect(conn)
        for table in source_metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.execute(
                        sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
                    )
            for index in table.indexes:
                index.create(conn, checkfirst=True)


@dataclass(frozen=True)
class SeedSize:
    vouchers: int
    tenants: tuple[str, ...]

    @property
    def orders(self) -> int:
        return max(1, self.vouchers // 2)

    @property
    def customers(self) -> int:
        return max(1, self.vouchers // 10)

    @property
    def redemptions(self) -> int:
        return max(1, self.vouchers // 2)

    @property
    def publications(self) -> int:
        return max(1, self.vouchers // 4)

    products = 200
    skus = 600


def tenant_names(count: int) -> tuple[str, ...]:
    base = ["demo", "acme"]
    return tuple(base[:count] + [f"tenant{i}" for i in range(3, count + 1)])


class _Gen:
    """Vectorised column generators over one numpy RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def ids(self, prefix: str, start: int, n: int) -> pa.Array:
        nums = pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())
        return pc.binary_join_element_wise(pa.scalar(prefix), pc.utf8_lpad(nums, 8, "0"), "")

    def pick(
        self, pool: Sequence[object], n: int, null_rate: float = 0.0, p: list[float] | None = None
    ) -> pa.Array:
        arr = pa.array(pool).take(pa.array(self.rng.choice(len(pool), n, p=p)))
        return self.nullify(arr, null_rate)

    def nullify(self, arr: pa.Array, rate: float) -> pa.Array:
        if rate <= 0:
            return arr
        mask = pa.array(self.rng.random(len(arr)) < rate)
        return pc.if_else(mask, pa.scalar(None, arr.type), arr)

    def ints(self, low: int, high: int, n: int, null_rate: float = 0.0) -> pa.Array:
        return self.nullify(pa.array(self.rng.integers(low, high, n, dtype=np.int64)), null_rate)

    def times(
        self, n: int, start_us: int = EPOCH_US, span_us: int = YEAR_US, null_rate: float = 0.0
    ) -> pa.Array:
        us = start_us + self.rng.integers(0, span_us, n, dtype=np.int64)
        return self.nullify(pa.array(us, pa.timestamp("us", tz="UTC")), null_rate)

    def after(self, base: pa.Array, max_us: int, null_rate: float = 0.0) -> pa.Array:
        us = pc.cast(base, pa.int64()).to_numpy(zero_copy_only=False)
        later = us + self.rng.integers(0, max_us, len(us), dtype=np.int64)
        return self.nullify(pa.array(later, pa.timestamp("us", tz="UTC")), null_rate)

    def refs(self, prefix: str, count: int, n: int, null_rate: float = 0.0) -> pa.Array:
        idx = pa.array(self.rng.integers(0, count, n, dtype=np.int64))
        nums = pc.utf8_lpad(pc.cast(idx, pa.string()), 8, "0")
        return self.nullify(pc.binary_join_element_wise(pa.scalar(prefix), nums, ""), null_rate)

    def metadata(self, n: int, numeric_key: str = "priority") -> pa.Array:
        """JSON objects with varying keys (some rows NULL, some ``{}``)."""

        def piece(key: str, values: list[str], rate: float) -> pa.Array:
            pool = [f"{json.dumps(key)}:{v}," for v in values]
            return pc.fill_null(self.pick(pool, n, null_rate=rate), "")

        parts = [
            piece("region", [json.dumps(r) for r in REGIONS], 0.1),
            piece("channel", [json.dumps(c) for c in CHANNELS], 0.4),
            piece("note", [json.dumps(t, ensure_ascii=False) for t in MESSY_TEXT], 0.6),
            piece(numeric_key, [str(i) for i in range(1, 6)], 0.5),
        ]
        body = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters=",")
        objects = pc.binary_join_element_wise(pa.scalar("{"), body, pa.scalar("}"), "")
        return self.nullify(objects, 0.05)


def _copy(conn: sa.Connection, table: str, batches: Iterator[pa.RecordBatch]) -> int:
    raw = conn.connection.driver_connection
    assert raw is not None
    rows = 0
    first = next(batches)
    cols = ", ".join(f'"{n}"' for n in first.schema.names)
    with raw.cursor() as cur:
        # The queued writer sends to the server from a thread while the next chunk is made.
        writer = QueuedLibpqWriter(cur)
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)", writer=writer) as copy:
            for batch in itertools.chain([first], batches):
                buf = io.BytesIO()
                pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
                copy.write(buf.getvalue())
                rows += batch.num_rows
    return rows


def _chunks(n: int, make: Callable[[int, int], dict[str, pa.Array]]) -> Iterator[pa.RecordBatch]:
    for start in range(0, n, CHUNK_ROWS):
        size = min(CHUNK_ROWS, n - start)
        yield pa.RecordBatch.from_pydict(make(start, size))


def _tenant_rows(
    conn: sa.Connection, tenant: str, t: int, size: SeedSize, g: _Gen
) -> dict[str, int]:
    pre = f"{tenant}_"
    counts: dict[str, int] = {}
    n_campaigns = 20
    conn.execute(
        sa.text("INSERT INTO tenants (id, name) VALUES (:id, :name)"),
        {"id": tenant, "name": tenant.capitalize()},
    )

    def campaigns(start: int, n: int) -> dict[str, pa.Array]:
        names = [f"Campaign {i + 1}" for i in range(n)]
        names[1] = 'Black Friday, "Big" Deals'
        names[2] = "=Früh bucher"
        return {
            "id": g.ids(f"camp_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "name": pa.array(names),
            "campaign_type": g.pick(["DISCOUNT_COUPONS", "GIFT_VOUCHERS", "LOYALTY_PROGRAM"], n),
            "category": g.pick(["seasonal", "retention", "acquisition"], n, 0.3),
            "category_id": g.pick(["cat_1", "cat_2", "cat_3"], n, 0.3),
            "created_at": g.times(n, EPOCH_US - YEAR_US),
            "metadata": g.metadata(n),
        }

    counts["campaigns"] = _copy(conn, "campaigns", _chunks(n_campaigns, campaigns))

    def customers(start: int, n: int) -> dict[str, pa.Array]:
        created = g.times(n)
        return {
            "id": g.ids(f"cust_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "source_id": g.nullify(g.ids(f"src-{pre}", start, n), 0.1),
            "name": g.pick(
                [
                    "Ana Müller",
                    "Bob O'Neil",
                    "Chen 陈",
                    "=cmd|' /C calc'!A0",
                    "Dana, Jr.",
                    'Émile "Em" Zola',
                    "+Plus Person",
                ],
                n,
                0.05,
            ),
            "email": g.pick(["ana@example.com", "bob@example.org", "chen@example.cn"], n, 0.1),
            "description": g.pick(MESSY_TEXT, n, 0.5),
            "phone": g.pick(["+1 555 0100", "+44 20 7946 0958", "-", "030 1234"], n, 0.3),
            "address_city": g.pick(["Berlin", "New York", "Kraków", "São Paulo"], n, 0.2),
            "address_state": g.pick(["BE", "NY", "MA", "SP"], n, 0.4),
            "address_line_1": g.pick(["1 Main St", "Straße 5, Hinterhaus", "Line\nBreak"], n, 0.2),
            "address_line_2": g.pick(["Apt 1", 'c/o "Office"'], n, 0.7),
            "address_country": g.pick(["US", "DE", "PL", "BR", "GB"], n, 0.1),
            "address_postal_code": g.pick(["10115", "10001", "30-001", "01310"], n, 0.2),
            "birthdate": g.nullify(
                pa.array(g.rng.integers(0, 18_000, n, dtype=np.int32), pa.date32()), 0.4
            ),
            "birthday": g.nullify(
                pa.array(g.rng.integers(0, 18_000, n, dtype=np.int32), pa.date32()), 0.7
            ),
            "referrer_id": g.refs(f"cust_{pre}", size.customers, n, 0.8),
            "created_at": created,
            "updated_at": g.after(created, YEAR_US // 4, 0.3),
            "metadata": g.metadata(n, "tier"),
        }

    counts["customers"] = _copy(conn, "customers", _chunks(size.customers, customers))

    def vouchers(start: int, n: int) -> dict[str, pa.Array]:
        kind = g.rng.choice(3, n, p=[0.7, 0.2, 0.1])
        created = g.times(n)
        scrambled = ((np.arange(start, start + n, dtype=np.int64) + t * 7_919) * 2_654_435_761) % (
            1 << 40
        )
        codes = pc.binary_join_element_wise(
            g.pick(
                ["SUMMER-", "WINTER-", "VIP-", "=SUM-", "-NEG-", "+PLUS-", "@AT-"],
                n,
                p=[0.4, 0.3, 0.26, 0.01, 0.01, 0.01, 0.01],
            ),
            pa.array(np.char.mod("%010X", scrambled)),
            "",
        )
        discount = pc.if_else(
            pa.array(kind == 0), g.pick(["AMOUNT", "PERCENT", "UNIT", "FIXED"], n), None
        )
        value = pa.array(np.round(g.rng.uniform(1, 500, n), 2)).cast(pa.decimal128(14, 2))
        ids = g.ids(f"v_{pre}", start, n)
        campaign_ids = g.refs(f"camp_{pre}", n_campaigns, n, 0.05)
        card = pa.array(kind > 0)
        cards.append(
            (pc.filter(ids, card), pc.filter(campaign_ids, card), pa.array(kind[kind > 0] == 1))
        )
        return {
            "id": ids,
            "tenant_id": pa.array([tenant] * n),
            "code": codes,
            "campaign_id": campaign_ids,
            "category": g.pick(["seasonal", "retention", "acquisition"], n, 0.4),
            "category_id": g.pick(["cat_1", "cat_2", "cat_3"], n, 0.4),
            "voucher_type": pa.array(
                np.array(["DISCOUNT_VOUCHER", "GIFT_VOUCHER", "LOYALTY_CARD"])[kind]
            ),
            "value": pc.if_else(pa.array(kind == 0), value, None),
            "discount_type": discount,
            "discount_amount_limit": g.ints(100, 10_000, n, 0.8),
            "discount_unit_type": pc.if_else(
                pc.equal(discount, "UNIT"), g.pick(["prod_1", "prod_2"], n), None
            ),
            "discount_unit_effect": pc.if_else(
                pc.equal(discount, "UNIT"), g.pick(["ADD_MISSING_ITEMS", "ADD_NEW_ITEMS"], n), None
            ),
            "gift_balance": pc.if_else(pa.array(kind == 1), g.ints(0, 100_000, n), None),
            "loyalty_balance": pc.if_else(pa.array(kind == 2), g.ints(0, 50_000, n), None),
            "redemption_quantity": g.ints(1, 10, n, 0.5),
            "redemption_count": g.ints(0, 5, n),
            "start_date": g.after(created, YEAR_US // 12, 0.3),
            "expiration_date": g.after(created, YEAR_US, 0.4),
            "validity_timeframe_interval": g.pick(["P2D", "P1W"], n, 0.9),
            "validity_timeframe_duration": g.pick(["PT1H", "PT12H"], n, 0.9),
            "validity_day_of_week": g.pick(["{0,1,2,3,4}", "{5,6}", "{1}"], n, 0.8),
            "active": pa.array(g.rng.random(n) < 0.9),
            "is_referral_code": pa.array(g.rng.random(n) < 0.05),
            "qr_code": g.nullify(
                pc.binary_join_element_wise(pa.scalar("https://dl.example.com/qr/"), codes, ""), 0.5
            ),
            "bar_code": g.nullify(
                pc.binary_join_element_wise(pa.scalar("https://dl.example.com/bar/"), codes, ""),
                0.5,
            ),
            "customer_id": g.refs(f"cust_{pre}", size.customers, n, 0.6),
            "additional_info": g.pick(MESSY_TEXT, n, 0.5),
            "created_at": created,
            "updated_at": g.after(created, YEAR_US // 2, 0.2),
            "metadata": g.metadata(n),
        }

    cards: list[tuple[pa.Array, pa.Array, pa.Array]] = []  # gift/loyalty cards, for their rows
    counts["vouchers"] = _copy(conn, "vouchers", _chunks(size.vouchers, vouchers))

    def orders(start: int, n: int) -> dict[str, pa.Array]:
        amount = g.rng.integers(100, 100_000, n, dtype=np.int64)
        discount = (amount * g.rng.uniform(0, 0.3, n)).astype(np.int64)
        items = (discount * g.rng.uniform(0, 1, n)).astype(np.int64)
        created = g.times(n)
        return {
            "id": g.ids(f"ord_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "source_id": g.nullify(g.ids(f"order-{pre}", start, n), 0.2),
            "status": g.pick(
                ["CREATED", "PAID", "CANCELED", "FULFILLED"], n, p=[0.1, 0.6, 0.1, 0.2]
            ),
            "amount": pa.array(amount),
            "discount_amount": pa.array(discount - items),
            "items_discount_amount": pa.array(items),
            "total_discount_amount": pa.array(discount),
            "total_amount": pa.array(amount - discount),
            "customer_id": g.refs(f"cust_{pre}", size.customers, n, 0.1),
            "referrer_id": g.refs(f"cust_{pre}", size.customers, n, 0.9),
            "created_at": created,
            "updated_at": g.after(created, YEAR_US // 12, 0.3),
            "metadata": g.metadata(n, "store"),
        }

    counts["orders"] = _copy(conn, "orders", _chunks(size.orders, orders))
    card_ids = pa.concat_arrays([c[0] for c in cards])
    card_campaigns = pa.concat_arrays([c[1] for c in cards])
    card_is_gift = pa.concat_arrays([c[2] for c in cards])
    counts.update(_activity_rows(conn, tenant, size, g))
    counts.update(_catalog_rows(conn, tenant, g))
    counts.update(_card_rows(conn, tenant, t, g, card_ids, card_campaigns, card_is_gift))
    return counts


def _load(
    conn: sa.Connection, table: str, n: int, make: Callable[[int, int], dict[str, pa.Array]]
) -> int:
    return _copy(conn, table, _chunks(n, make)) if n > 0 else 0


def _activity_rows(conn: sa.Connection, tenant: str, size: SeedSize, g: _Gen) -> dict[str, int]:
    """Redemptions (and rollbacks) and publications of the tenant's vouchers."""
    pre = f"{tenant}_"

    def redemptions(start: int, n: int) -> dict[str, pa.Array]:
        rollback = g.rng.random(n) < 0.1
        success = g.rng.random(n) < 0.85
        rolled_back = ~rollback & success & (g.rng.random(n) < 0.08)
        failed = pa.array(~success)
        return {
            "id": g.ids(f"r_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "object": pa.array(np.where(rollback, "redemption_rollback", "redemption")),
            "voucher_id": g.refs(f"v_{pre}", size.vouchers, n, 0.02),
            "order_id": g.refs(f"ord_{pre}", size.orders, n, 0.3),
            "customer_id": g.refs(f"cust_{pre}", size.customers, n, 0.15),
            "promotion_tier_id": g.pick(["promo_tier_1", "promo_tier_2", "promo_tier_3"], n, 0.85),
            "tracking_id": g.pick(
                ["track_a1B2c3", "track_=1+1", "@tracker", "-track-9", 'trk, "x"', "трек"], n, 0.3
            ),
            "amount": g.ints(0, 50_000, n, 0.3),
            "gift_amount": g.ints(0, 10_000, n, 0.8),
            "loyalty_points": g.ints(0, 1_000, n, 0.8),
            "result": pa.array(np.where(success, "SUCCESS", "FAILURE")),
            "status": pa.array(
                np.where(rolled_back, "ROLLED_BACK", np.where(success, "SUCCEEDED", "FAILED"))
            ),
            "failure_code": pc.if_else(
                failed,
                g.pick(["voucher_expired", "quantity_exceeded", "customer_rules_violated"], n),
                None,
            ),
            "failure_message": pc.if_else(failed, g.pick(MESSY_TEXT, n, 0.3), None),
            "date": g.times(n),
            "metadata": g.metadata(n, "attempt"),
        }

    def publications(start: int, n: int) -> dict[str, pa.Array]:
        return {
            "id": g.ids(f"pub_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "voucher_id": g.refs(f"v_{pre}", size.vouchers, n, 0.01),
            "customer_id": g.refs(f"cust_{pre}", size.customers, n, 0.1),
            "channel": g.pick(["API", "voucherify-website", "Automation", "Email"], n, 0.1),
            "is_winner": g.nullify(pa.array(g.rng.random(n) < 0.3), 0.7),
            "date": g.times(n),
            "metadata": g.metadata(n, "batch"),
        }

    return {
        "redemptions": _load(conn, "redemptions", size.redemptions, redemptions),
        "publications": _load(conn, "publications", size.publications, publications),
    }


def _catalog_rows(conn: sa.Connection, tenant: str, g: _Gen) -> dict[str, int]:
    """Products and their SKUs."""
    pre = f"{tenant}_"

    def products(start: int, n: int) -> dict[str, pa.Array]:
        ids = g.ids(f"prod_{pre}", start, n)
        created = g.times(n, EPOCH_US - YEAR_US)
        return {
            "id": ids,
            "tenant_id": pa.array([tenant] * n),
            "source_id": g.nullify(g.ids(f"product-{pre}", start, n), 0.2),
            "name": g.pick(
                [
                    "Espresso ☕",
                    'Shoe "Runner", size 42',
                    "=SUM(A1:A9)",
                    "+Plus pack",
                    "-Minus edition",
                    "@handle mug",
                    "Two\nline product",
                    "Über-Bahn Ticket",
                    "Plain tee",
                ],
                n,
                0.05,
            ),
            "price": g.ints(0, 100_000, n, 0.1),
            "image_url": g.nullify(
                pc.binary_join_element_wise(pa.scalar("https://img.example.com/"), ids, ""), 0.3
            ),
            "attributes": g.pick(
                ["{color,size}", "{material}", "{}", '{"gift wrap","say \\"hi\\""}'], n, 0.3
            ),
            "created_at": created,
            "updated_at": g.after(created, YEAR_US // 4, 0.3),
            "metadata": g.metadata(n, "shelf"),
        }

    def skus(start: int, n: int) -> dict[str, pa.Array]:
        ids = g.ids(f"sku_{pre}", start, n)
        created = g.times(n, EPOCH_US - YEAR_US)
        return {
            "id": ids,
            "tenant_id": pa.array([tenant] * n),
            "sku": g.nullify(
                pc.binary_join_element_wise(
                    g.pick(["SKU-", "=SKU-", "Größe-", "+SKU-"], n, p=[0.85, 0.05, 0.05, 0.05]),
                    pc.utf8_lpad(
                        pc.cast(pa.array(np.arange(start, start + n)), pa.string()), 5, "0"
                    ),
                    "",
                ),
                0.05,
            ),
            "product_id": g.refs(f"prod_{pre}", SeedSize.products, n),
            "source_id": g.nullify(g.ids(f"sku-src-{pre}", start, n), 0.3),
            "currency": g.pick(["USD", "EUR", "GBP", "PLN", "JPY"], n, 0.05),
            "price": g.ints(0, 100_000, n, 0.1),
            "image_url": g.nullify(
                pc.binary_join_element_wise(pa.scalar("https://img.example.com/"), ids, ""), 0.4
            ),
            "attributes": g.pick(
                [
                    '{"color": "red", "size": "M"}',
                    '{"color": "blue"}',
                    "{}",
                    '{"note": "=1+1"}',
                    '{"label": "Zürich \\"XL\\", 2"}',
                ],
                n,
                0.2,
            ),
            "created_at": created,
            "updated_at": g.after(created, YEAR_US // 4, 0.3),
            "metadata": g.metadata(n, "bin"),
        }

    return {
        "products": _load(conn, "products", SeedSize.products, products),
        "skus": _load(conn, "skus", SeedSize.skus, skus),
    }


_NEGATIVE_TYPES = [
    "CREDITS_REDEMPTION",
    "CREDITS_REMOVAL",
    "POINTS_REDEMPTION",
    "POINTS_REMOVAL",
    "POINTS_EXPIRATION",
    "POINTS_CANCELLATION",
    "POINTS_TRANSFER_OUT",
]


def _card_rows(
    conn: sa.Connection,
    tenant: str,
    t: int,
    g: _Gen,
    card_ids: pa.Array,
    card_campaigns: pa.Array,
    card_is_gift: pa.Array,
) -> dict[str, int]:
    """Point buckets of loyalty cards and transactions of gift/loyalty cards.

    The second tenant (``acme``) gets no transactions, so one entity is empty for it.
    """
    pre = f"{tenant}_"
    loyalty = pc.invert(card_is_gift)
    loyalty_ids = pc.filter(card_ids, loyalty)
    loyalty_campaigns = pc.filter(card_campaigns, loyalty)

    def buckets(start: int, n: int) -> dict[str, pa.Array]:
        idx = pa.array(g.rng.integers(0, len(loyalty_ids), n, dtype=np.int64))
        created = g.times(n)
        return {
            "id": g.ids(f"lpb_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "voucher_id": loyalty_ids.take(idx),
            "campaign_id": loyalty_campaigns.take(idx),
            "status": g.pick(["ACTIVE", "EXPIRED"], n, p=[0.7, 0.3]),
            "points": g.ints(1, 5_000, n),
            "expires_at": g.after(created, YEAR_US, 0.1),
            "created_at": created,
        }

    n_transactions = 0 if t == 1 else 2 * len(card_ids)

    def transactions(start: int, n: int) -> dict[str, pa.Array]:
        idx = pa.array(g.rng.integers(0, len(card_ids), n, dtype=np.int64))
        gift = card_is_gift.take(idx).to_numpy(zero_copy_only=False)
        credit_types = np.array(
            ["CREDITS_ADDITION", "CREDITS_REDEMPTION", "CREDITS_REFUND", "CREDITS_REMOVAL"]
        )
        point_types = np.array(
            [
                "POINTS_ACCRUAL",
                "POINTS_ADDITION",
                "POINTS_REDEMPTION",
                "POINTS_REFUND",
                "POINTS_REMOVAL",
                "POINTS_EXPIRATION",
                "POINTS_CANCELLATION",
                "POINTS_TRANSFER_IN",
                "POINTS_TRANSFER_OUT",
            ]
        )
        types = np.where(
            gift,
            credit_types[g.rng.integers(0, len(credit_types), n)],
            point_types[g.rng.integers(0, len(point_types), n)],
        )
        magnitude = g.rng.integers(1, 10_000, n, dtype=np.int64)
        refund = pa.array(np.char.endswith(types, "REFUND"))
        return {
            "id": g.ids(f"vtx_{pre}", start, n),
            "tenant_id": pa.array([tenant] * n),
            "source_id": g.nullify(g.ids(f"txn-src-{pre}", start, n), 0.5),
            "voucher_id": card_ids.take(idx),
            "campaign_id": card_campaigns.take(idx),
            "type": pa.array(types),
            "status": g.pick(["SUCCEEDED", "FAILED"], n, p=[0.95, 0.05]),
            "source": g.pick(
                ["API", "voucherify-web-ui", "Automation", "@import", "=batch"], n, 0.2
            ),
            "reason": g.pick(MESSY_TEXT, n, 0.4),
            "amount": pa.array(np.where(np.isin(types, _NEGATIVE_TYPES), -magnitude, magnitude)),
            "balance": g.ints(0, 100_000, n),
            "related_transaction_id": pc.if_else(
                refund, g.refs(f"vtx_{pre}", n_transactions, n), None
            ),
            "details": g.metadata(n, "points"),
            "created_at": g.times(n),
        }

    n_buckets = 2 * len(loyalty_ids)
    return {
        "loyalty_point_buckets": _load(conn, "loyalty_point_buckets", n_buckets, buckets),
        "voucher_transactions": _load(conn, "voucher_transactions", n_transactions, transactions),
    }


def delete_tenant(conn: sa.Connection, tenant: str) -> None:
    """Remove every sample row of ``tenant`` (children first)."""
    for table in reversed(source_metadata.sorted_tables):
        column = "id" if table.name == "tenants" else "tenant_id"
        conn.execute(sa.text(f'DELETE FROM "{table.name}" WHERE {column} = :t'), {"t": tenant})


def seeded_vouchers(conn: sa.Connection, tenant: str) -> int:
    return int(
        conn.execute(
            sa.text("SELECT count(*) FROM vouchers WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
    )


def is_seeded(conn: sa.Connection, tenant: str, vouchers: int) -> bool:
    """True when ``tenant`` has this many vouchers and the tables every seed fills have rows.

    A database seeded by an older version (before a table was generated) is reseeded.
    """
    if seeded_vouchers(conn, tenant) != vouchers:
        return False
    always = ("campaigns", "customers", "orders", "redemptions", "publications", "products", "skus")
    return all(
        conn.execute(
            sa.text(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE tenant_id = :t)"), {"t": tenant}
        ).scalar_one()
        for table in always
    )


def seed(
    engine: sa.Engine,
    vouchers: int,
    tenants: int | Sequence[str] = 2,
    *,
    seed: int = 42,
    force: bool = False,
) -> dict[str, dict[str, int]]:
    """Load ``vouchers`` vouchers and the rows of every other entity, per tenant.

    ``tenants`` is a count (demo, acme, tenant3, ...) or explicit tenant names. A tenant that
    already has exactly that many vouchers is kept as is unless ``force``; otherwise its rows
    are replaced. Same arguments, same data. The loaded tables are analyzed once at the end.
    """
    names = tenant_names(tenants) if isinstance(tenants, int) else tuple(tenants)
    size = SeedSize(vouchers, names)
    report: dict[str, dict[str, int]] = {}
    touched: set[str] = set()
    for t, tenant in enumerate(size.tenants):
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242003)"))
            if not force and is_seeded(conn, tenant, vouchers):
                report[tenant] = {"vouchers": vouchers, "skipped": 1}
                continue
            delete_tenant(conn, tenant)
            report[tenant] = _tenant_rows(conn, tenant, t, size, _Gen(seed + t))
            touched.update(report[tenant])
    if touched:
        with engine.connect() as conn:
            tables = ", ".join(f'"{name}"' for name in sorted(touched | {"tenants"}))
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text(f"ANALYZE {tables}")
            )
    return report
