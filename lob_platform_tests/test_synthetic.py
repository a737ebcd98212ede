"""Tests of the synthetic market generator: exact raw formats, determinism, and the planted effects.

Every check rebuilds what it needs independently from the written files (no simulator internals).
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lob_platform.sources.synthetic import MarketConfig, generate_market

LEVELS = 5
# Friday, Saturday, Sunday: equities and futures trade only on the first day.
SMALL = MarketConfig(
    start_date="2024-03-08",
    n_days=3,
    lobster_levels=LEVELS,
    lobster_events_per_day=3_000,
    mic_events_per_day=2_000,
    order_feed_events_per_day=2_000,
    crypto_pairs=("BTC-USDT", "WLD-USDT"),
    crypto_hours_per_day=0.25,
)
ONE_LOBSTER_DAY = dict(n_days=1, mic_products=(), order_feed_products=(), crypto_pairs=(), lobster_tickers=("ACME",))
ONE_CRYPTO_DAY = dict(
    n_days=1, lobster_tickers=(), mic_products=(), order_feed_products=(), crypto_pairs=("BTC-USDT",),
    crypto_exchanges=("binance_perp", "binance_spot"), crypto_hours_per_day=2.0,
)
EMPTY_ASK, EMPTY_BID = 9_999_999_999, -9_999_999_999


@pytest.fixture(scope="module")
def small_market(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("small")
    return root, generate_market(root, SMALL)


def _lobster_day(root: Path, config: MarketConfig) -> tuple[pl.DataFrame, np.ndarray]:
    """Generate and read back one LOBSTER ticker-day: (messages, orderbook as an int array)."""
    paths = generate_market(root, config)
    message = next(p for p in paths if "_message_" in p.name)
    book = next(p for p in paths if "_orderbook_" in p.name)
    return _read_messages(message), pl.read_csv(book, has_header=False).to_numpy()


def _read_messages(path: Path) -> pl.DataFrame:
    names = ["time", "kind", "order_id", "size", "price", "direction"]
    return pl.read_csv(path, has_header=False, new_columns=names, schema_overrides={"time": pl.String})


@pytest.fixture(scope="module")
def signal_day(tmp_path_factory):
    return _lobster_day(tmp_path_factory.mktemp("signal"), MarketConfig(**ONE_LOBSTER_DAY))


@pytest.fixture(scope="module")
def null_day(tmp_path_factory):
    return _lobster_day(tmp_path_factory.mktemp("null"), MarketConfig.no_signal(**ONE_LOBSTER_DAY))


# --------------------------------------------------------------------------- determinism


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_files_and_rerun_leaves_no_temp_files(small_market, tmp_path):
    root, paths = small_market
    again = generate_market(tmp_path, SMALL)
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(root) for p in paths]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))

    before = {p: p.read_bytes() for p in again}
    assert generate_market(tmp_path, SMALL) == again
    assert _all_files(tmp_path) == again  # overwritten in place, no temp files left
    assert all(p.read_bytes() == before[p] for p in again)


def test_different_seed_changes_every_file(small_market, tmp_path):
    root, paths = small_market
    other = generate_market(tmp_path, dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert [p.relative_to(tmp_path) for p in other] == [p.relative_to(root) for p in paths]
    data = [(a, b) for a, b in zip(paths, other) if a.name != "venues.toml"]  # configuration, not data
    assert all(a.read_bytes() != b.read_bytes() for a, b in data)


def test_weekends_have_crypto_but_no_lobster_or_mic(small_market):
    root, paths = small_market
    names = {p.relative_to(root).as_posix() for p in paths}
    equity = {n for n in names if n.startswith(("lobster/", "mic/"))}
    assert equity and all("2024-03-08" in n for n in equity)
    assert len(equity) == 2 * 2 + 1  # two tickers (message + orderbook), one product
    for day in ("2024-03-08", "2024-03-09", "2024-03-10"):
        assert sum(n.startswith("crypto/") and day in n for n in names) == 3 * 2


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="hawkes_branching"):
        MarketConfig(hawkes_branching=1.0)
    assert MarketConfig.no_signal(seed=3) == MarketConfig(seed=3, ofi_signal_strength=0, hawkes_branching=0, lead_lag_strength=0)


# --------------------------------------------------------------------------- LOBSTER


def _side_levels(row: np.ndarray, offset: int) -> dict[int, int]:
    """Occupied levels of one side of a LOBSTER orderbook row (offset 0 asks, 2 bids)."""
    return {int(p): int(s) for p, s in zip(row[offset::4], row[offset + 1 :: 4]) if s > 0}


def _top(levels: dict[int, int], asks: bool, n: int) -> list[tuple[int, int]]:
    top = sorted(levels.items(), reverse=not asks)[:n]
    return top + [(EMPTY_ASK if asks else EMPTY_BID, 0)] * (n - len(top))


def _replay_and_compare(messages: pl.DataFrame, book: np.ndarray, levels: int) -> None:
    """Rebuild the book by aggregating sizes per price (opening book = row 0 minus message 0) and
    check every orderbook row, plus that each message references a live order with enough size."""
    sides = {-1: _side_levels(book[0], 0), 1: _side_levels(book[0], 2)}
    rows = messages.select("kind", "order_id", "size", "price", "direction").rows()
    first_kind, _, first_size, first_price, first_direction = rows[0]
    if first_kind != 5:
        undo = -first_size if first_kind == 1 else first_size
        side = sides[first_direction]
        side[first_price] = side.get(first_price, 0) + undo
        if side[first_price] == 0:
            del side[first_price]
    remaining: dict[int, int] = {}  # live orders submitted today
    finished: set[int] = set()
    for k, (kind, order_id, size, price, direction) in enumerate(rows):
        assert size > 0 and direction in (1, -1)
        side = sides[direction]
        if kind == 1:
            assert order_id not in remaining and order_id not in finished
            remaining[order_id] = size
            side[price] = side.get(price, 0) + size
        elif kind in (2, 3, 4):
            assert order_id not in finished, f"message {k} references a finished order"
            assert side.get(price, 0) >= size, f"message {k} takes more than its level holds"
            if order_id in remaining:
                remaining[order_id] -= size
                assert remaining[order_id] >= 0
                assert remaining[order_id] == 0 if kind == 3 else kind == 4 or remaining[order_id] > 0
            if kind == 3 or remaining.get(order_id) == 0:
                remaining.pop(order_id, None)
                finished.add(order_id)
            side[price] -= size
            if side[price] == 0:
                del side[price]
        else:
            assert kind == 5 and order_id == 0
        expected = [v for (ap, asz), (bp, bsz) in zip(_top(sides[-1], True, levels), _top(sides[1], False, levels)) for v in (ap, asz, bp, bsz)]
        assert book[k].tolist() == expected, f"orderbook row {k} differs from the replayed book"


def test_lobster_orderbook_matches_replayed_messages(small_market):
    root, paths = small_market
    message_paths = [p for p in paths if "_message_" in p.name]
    assert len(message_paths) == 2
    for message_path in message_paths:
        messages = _read_messages(message_path)
        book = pl.read_csv(message_path.with_name(message_path.name.replace("_message_", "_orderbook_")), has_header=False).to_numpy()
        assert book.shape == (messages.height, 4 * LEVELS)
        _replay_and_compare(messages, book, LEVELS)


def test_lobster_message_format(small_market):
    root, paths = small_market
    for path in (p for p in paths if "_message_" in p.name):
        assert re.fullmatch(r"[A-Z]+_2024-03-08_34200000_57600000_message_5\.csv", path.name)
        lines = path.read_text().splitlines()
        assert all(re.fullmatch(r"\d{5}\.\d{9},[1-5],\d+,\d+,\d+,-?1", line) for line in lines)
        messages = _read_messages(path)
        seconds = messages["time"].cast(pl.Float64).to_numpy()
        assert np.all(np.diff(seconds) >= 0) and 34_200 <= seconds[0] and seconds[-1] < 57_600
        visible = messages.filter(pl.col("kind") != 5)
        hidden = messages.filter(pl.col("kind") == 5)
        assert (visible["price"] % 100 == 0).all() and (hidden["price"] % 50 == 0).all()
        assert (hidden["order_id"] == 0).all() and (visible["order_id"] > 0).all()
        assert set(messages["kind"].unique()) == {1, 2, 3, 4, 5}
        assert (messages["time"].is_duplicated()).any()  # sweeps share a timestamp
        prices = visible["price"].to_numpy() / 10_000
        assert 40 < prices.min() and prices.max() < 220


def test_lobster_book_is_never_crossed_and_spread_is_tight(signal_day):
    _, book = signal_day
    spread_ticks = (book[:, 0] - book[:, 2]) // 100
    assert spread_ticks.min() >= 1
    assert np.mean(spread_ticks <= 3) > 0.95
    assert np.mean((book[:, 0::4] != EMPTY_ASK).all(axis=1) & (book[:, 2::4] != EMPTY_BID).all(axis=1)) > 0.9


# --------------------------------------------------------------------------- planted effects


def _ofi_hit_rate(messages: pl.DataFrame, book: np.ndarray, window: int = 50) -> float:
    """P(sign of OFI over the last `window` messages = direction of the next mid change), measured
    at the last message of each timestamp with OFI != 0 (Cont-Kukanov-Stoikov best-level OFI)."""
    ask, ask_size, bid, bid_size = (book[:, i].astype(float) for i in range(4))
    e = np.zeros(len(book))
    e[1:] = (
        (bid[1:] >= bid[:-1]) * bid_size[1:] - (bid[1:] <= bid[:-1]) * bid_size[:-1]
        - (ask[1:] <= ask[:-1]) * ask_size[1:] + (ask[1:] >= ask[:-1]) * ask_size[:-1]
    )
    total = np.cumsum(e)
    ofi = total - np.concatenate([np.zeros(window), total[:-window]])
    mid = (ask + bid) / 2
    changes = np.flatnonzero(np.diff(mid)) + 1
    nxt = np.searchsorted(changes, np.arange(len(mid)), side="right")
    times = messages["time"].to_numpy()
    last_of_timestamp = np.append(times[1:] != times[:-1], True)
    rows = np.flatnonzero((nxt < len(changes)) & last_of_timestamp & (ofi != 0))
    direction = np.sign(mid[changes[nxt[rows]]] - mid[rows])
    return float(np.mean(np.sign(ofi[rows]) == direction))


def test_ofi_predicts_next_mid_move_with_planted_strength(signal_day):
    messages, book = signal_day
    assert 18_000 < messages.height < 22_000
    assert abs(_ofi_hit_rate(messages, book) - (0.5 + MarketConfig().ofi_signal_strength / 2)) <= 0.07


def test_ofi_has_no_edge_without_signal(null_day):
    messages, book = null_day
    assert abs(_ofi_hit_rate(messages, book) - 0.5) <= 0.05


def _dispersion_of_arrivals(messages: pl.DataFrame) -> float:
    """Variance/mean of arrivals (distinct timestamps) per 1-second bin over the session."""
    arrivals = messages["time"].unique().cast(pl.Float64).to_numpy()
    counts = np.bincount((arrivals - 34_200).astype(int), minlength=23_400)
    return float(counts.var() / counts.mean())


def test_hawkes_arrivals_cluster_and_poisson_arrivals_do_not(signal_day, null_day):
    assert _dispersion_of_arrivals(signal_day[0]) > 1.8
    assert _dispersion_of_arrivals(null_day[0]) < 1.3


def _log_mid_every_5s(path: Path, hours: float) -> np.ndarray:
    """Last-observed log mid on a 5-second grid from the day start (shared by every venue)."""
    frame = pl.read_csv(path)
    stamps = frame["timestamp"].to_numpy()
    mid = ((frame["asks[0].price"] + frame["bids[0].price"]) / 2).to_numpy()
    day_start = stamps[0] - stamps[0] % 86_400_000_000
    grid = day_start + np.arange(60_000_000, int(hours * 3600e6), 5_000_000)
    return np.log(mid[np.searchsorted(stamps, grid, side="right") - 1])


def _cross_correlations(config: MarketConfig, root: Path, max_lag: int = 6) -> dict[int, float]:
    """corr(perp 5 s return at t, spot 5 s return at t + lag) for lag in -max_lag..max_lag."""
    paths = generate_market(root, config)
    perp, spot = (
        np.diff(_log_mid_every_5s(next(p for p in paths if p.name.startswith(venue)), config.crypto_hours_per_day))
        for venue in ("binance_perp", "binance_spot")
    )
    n = len(perp)
    return {
        lag: float(np.corrcoef(perp[max(0, -lag) : n - max(0, lag)], spot[max(0, lag) : n - max(0, -lag)])[0, 1])
        for lag in range(-max_lag, max_lag + 1)
    }


def test_perp_leads_spot_by_the_planted_lag(tmp_path):
    config = MarketConfig(**ONE_CRYPTO_DAY)
    correlations = _cross_correlations(config, tmp_path)
    peak = max(correlations, key=correlations.get)
    assert peak == round(config.lead_lag_s / 5)
    assert correlations[peak] > 0.3


def test_no_lead_lag_without_signal(tmp_path):
    correlations = _cross_correlations(MarketConfig.no_signal(**ONE_CRYPTO_DAY), tmp_path)
    assert max(abs(c) for c in correlations.values()) < 0.1


# --------------------------------------------------------------------------- crypto and MIC formats


CRYPTO_HEADER = "exchange,symbol,timestamp,local_timestamp," + ",".join(
    f"asks[{i}].price,asks[{i}].amount,bids[{i}].price,bids[{i}].amount" for i in range(5)
)
PRICE_DECIMALS = {"BTCUSDT": 2, "WLDUSDT": 4}  # the registry's ticks


def test_crypto_snapshot_format(small_market):
    root, paths = small_market
    crypto = [p for p in paths if p.parent.name == "crypto"]
    assert crypto
    for path in crypto:
        exchange, day, symbol = re.fullmatch(r"(\w+?)_book_snapshot_5_(\d{4}-\d{2}-\d{2})_([A-Z]+)\.csv\.gz", path.name).groups()
        with gzip.open(path, "rt") as handle:
            assert handle.readline().rstrip("\n") == CRYPTO_HEADER
        text = pl.read_csv(path, infer_schema=False)
        assert set(text["exchange"]) == {exchange} and set(text["symbol"]) == {symbol}
        decimals = PRICE_DECIMALS[symbol]
        price_columns = [c for c in text.columns if c.endswith(".price")]
        assert all(text[c].str.contains(rf"^\d+\.\d{{{decimals}}}$").all() for c in price_columns)
        frame = pl.read_csv(path)
        stamps = frame["timestamp"].to_numpy()
        day_start = int(np.datetime64(day, "us").astype(np.int64))
        assert np.all(np.diff(stamps) > 0) and day_start <= stamps[0] and stamps[-1] < day_start + 86_400_000_000
        assert (frame["local_timestamp"] > frame["timestamp"]).all()
        asks = frame.select(f"asks[{i}].price" for i in range(5)).to_numpy()
        bids = frame.select(f"bids[{i}].price" for i in range(5)).to_numpy()
        assert np.all(np.diff(asks, axis=1) > 0) and np.all(np.diff(bids, axis=1) < 0) and np.all(bids[:, 0] < asks[:, 0])
        amounts = frame.select(c for c in frame.columns if c.endswith(".amount")).to_numpy()
        assert amounts.min() > 0


MIC_SCHEMA = {"tst": pl.Int64, "event_code": pl.Int8, "vol": pl.Int64, "prc": pl.Float64, "is_buy": pl.Boolean, "order_id": pl.Int64}


def test_mic_order_log_format_and_replay(small_market):
    root, paths = small_market
    (path,) = [p for p in paths if p.parent.name == "mic"]
    assert path.name == "2024-03-08__RTSX_FUT__RIH4.parquet"
    log = pl.read_parquet(path)
    assert dict(log.schema) == MIC_SCHEMA
    assert set(log["event_code"].unique()) == {0, 1, 2}
    stamps = log["tst"].to_numpy()
    session_open = int(np.datetime64("2024-03-08T07:00", "ns").astype(np.int64))
    assert np.all(np.diff(stamps) >= 0) and stamps[0] >= session_open and stamps[-1] < session_open + (8 * 60 + 45) * 60 * 10**9
    assert (log["vol"] > 0).all() and (log["prc"] % 10.0 == 0).all() and 90_000 < log["prc"].mean() < 130_000

    orders: dict[int, list] = {}
    levels = {True: {}, False: {}}
    for tst, code, vol, prc, is_buy, order_id in log.iter_rows():
        if code == 1:
            assert order_id not in orders
            orders[order_id] = [is_buy, prc, vol]
        else:
            side, price, left = orders[order_id]
            assert (side, price) == (is_buy, prc) and vol <= left
            orders[order_id][2] -= vol
            if orders[order_id][2] == 0:
                del orders[order_id]
        book = levels[is_buy]
        book[prc] = book.get(prc, 0) + (vol if code == 1 else -vol)
        if book[prc] == 0:
            del book[prc]
        if tst > session_open:
            assert max(levels[True]) < min(levels[False])


def test_every_generated_day_passes_the_platforms_validation(tmp_path):
    """The generator and the readers agree: each raw file reads and passes every rule."""
    from lob_platform.sources.catalog import Catalogue
    from lob_platform.sources.registry import load_venues
    from lob_platform.validation.report import check_rules

    config = MarketConfig(n_days=2, lobster_events_per_day=3_000, mic_events_per_day=2_000, order_feed_events_per_day=2_000,
                          crypto_hours_per_day=0.5, crypto_pairs=("BTC-USDT", "WLD-USDT"))
    generate_market(tmp_path, config)
    venues = {venue.name: venue for venue in load_venues(tmp_path)}
    days = Catalogue.scan(list(venues.values())).days
    assert {d.venue for d in days} == {"lobster", "mic", "crypto", "crypto_orders"}
    for day in days:
        venue = venues[day.venue]
        tick = venue.tick_for(day.instrument)
        table, _ = venue.with_book(day.read(), tick)  # MIC and the order feed: the book rebuilt from their orders
        report = check_rules(table, venue.kind, tick)
        assert report.passed, report.describe(day.source)
