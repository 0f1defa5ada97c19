"""Partitions without servers: the partition NATS puts a session in, the stored subjects,
and how runtimes share the partitions (the balance's arithmetic)."""

from __future__ import annotations

import random

import pytest

from turnlog.services.adapters.nats.partitioning import (
    InboundSubject,
    parse_inbound,
    partition_of,
    producer_subject,
    subject_transform,
)
from turnlog.services.adapters.nats.subjects import Subjects
from turnlog.services.app.partitions import PARTITIONS, Balance, Moves, ranges, share


def test_partition_of_is_fnv_1a_32_of_the_token_modulo_the_partitions() -> None:
    # FNV-1a 32 of "", "a" and "foobar" are 0x811c9dc5, 0xe40c292c and 0xbf9cf968
    assert partition_of("", 2**32) == 0x811C9DC5
    assert partition_of("a", 2**32) == 0xE40C292C
    assert partition_of("foobar", 2**32) == 0xBF9CF968
    assert partition_of("foobar") == 0xBF9CF968 % 16 == 8
    assert all(0 <= partition_of(str(n)) < PARTITIONS for n in range(1000))


def test_sessions_spread_over_every_partition() -> None:
    rng = random.Random(7)
    counts = [0] * PARTITIONS
    for _ in range(16_000):
        counts[partition_of(f"{rng.getrandbits(128):032x}")] += 1
    assert min(counts) > 850 and max(counts) < 1150


def test_the_stream_transform_inserts_the_partition_of_the_session_token() -> None:
    transform = subject_transform(Subjects("acme"))
    assert transform.src == "acme.in.*.*"
    assert transform.dest == "acme.in.{{wildcard(1)}}.{{partition(16,2)}}.{{wildcard(2)}}"


def test_inbound_subjects_are_read_in_both_forms() -> None:
    sid = "5b0c8e1e-3c1f-4f7e-9a51-0f7f2f0c9d11"
    n = partition_of(sid)
    assert parse_inbound(f"turnlog.in.notes.{sid}", "turnlog") == InboundSubject("notes", sid)
    stored = parse_inbound(f"turnlog.in.notes.{n}.{sid}", "turnlog")
    assert stored == InboundSubject("notes", sid, n)
    assert stored is not None and stored.session_id == sid and not stored.misplaced
    new = parse_inbound(f"turnlog.in.notes.{partition_of('new')}.new", "turnlog")
    assert new is not None and new.session_id is None and not new.misplaced
    wrong = parse_inbound(f"turnlog.in.notes.{(n + 1) % 16}.{sid}", "turnlog")
    assert wrong is not None and wrong.misplaced


@pytest.mark.parametrize(
    "subject",
    [
        "turnlog.in.notes",
        "other.in.notes.new",
        "turnlog.out.notes.new",
        "turnlog.in.notes.16.new",
        "turnlog.in.notes.01.new",
        "turnlog.in.notes.x.new",
        "turnlog.in.notes.1.2.new",
        "turnlog.in..new",
    ],
)
def test_other_subjects_are_not_inbound_ones(subject: str) -> None:
    assert parse_inbound(subject, "turnlog") is None


def test_a_dead_letter_names_the_subject_the_producer_published_on() -> None:
    sid = "5b0c8e1e-3c1f-4f7e-9a51-0f7f2f0c9d11"
    n = partition_of(sid)
    assert producer_subject(f"t.in.a.{n}.{sid}", "t") == f"t.in.a.{sid}"  # the stream's
    assert producer_subject(f"t.in.a.{sid}", "t") == f"t.in.a.{sid}"
    wrong = f"t.in.a.{(n + 3) % 16}.{sid}"  # only a producer puts a wrong one there
    assert producer_subject(wrong, "t") == wrong


@pytest.mark.parametrize(("live", "each"), [(0, 16), (1, 16), (2, 8), (3, 6), (5, 4), (16, 1)])
def test_each_runtime_aims_at_ceil_16_over_the_live_runtimes(live: int, each: int) -> None:
    assert share(live) == each


def test_a_runtime_alone_claims_every_free_partition() -> None:
    moves = Balance(rng=random.Random(1)).moves(set(), set(), live=1)
    assert moves == Moves(claim=tuple(range(16)))


def test_a_runtime_under_its_share_claims_only_free_partitions_up_to_it() -> None:
    mine, others = {0, 1}, set(range(2, 12))
    moves = Balance(rng=random.Random(1)).moves(mine, mine | others, live=3)
    assert len(moves.claim) == 4 and set(moves.claim) <= set(range(12, 16))
    assert moves.release == ()


def test_a_runtime_over_its_share_lets_go_after_patience_the_lightest_first() -> None:
    balance = Balance(patience=2)
    mine = set(range(16))
    load = {p: 1 for p in mine} | {3: 0, 9: 0, 15: 5}
    assert balance.moves(mine, mine, live=2, in_flight=load) == Moves()  # a runtime joins
    moves = balance.moves(mine, mine, live=2, in_flight=load)
    assert len(moves.release) == 8 and {3, 9} <= set(moves.release)
    assert 15 not in moves.release
    assert balance.moves(mine, mine, live=2) == Moves()  # patience again before any more


def test_a_runtime_seen_for_a_moment_moves_nothing() -> None:
    balance = Balance(patience=2)
    mine = set(range(16))
    assert balance.moves(mine, mine, live=2) == Moves()
    assert balance.moves(mine, mine, live=1) == Moves()
    assert balance.moves(mine, mine, live=2) == Moves()


def test_no_runtime_lets_go_while_a_partition_is_free() -> None:
    balance = Balance(patience=1)
    mine = set(range(10))
    for _ in range(3):  # the free ones are for the runtimes under their share
        assert balance.moves(mine, mine | {10, 11}, live=2).release == ()


def test_a_partition_nobody_takes_is_taken_anyway_after_patience() -> None:
    balance = Balance(patience=2)
    mine = set(range(8))
    taken = mine | set(range(8, 15))  # 15 is free, yet everyone is at their share
    assert balance.moves(mine, taken, live=2).claim == ()
    assert balance.moves(mine, taken, live=2).claim == ()
    assert balance.moves(mine, taken, live=2).claim == (15,)


def test_runtimes_that_follow_the_balance_share_all_partitions_and_settle() -> None:
    rng = random.Random(3)
    owners: list[set[int]] = [set(), set(), set()]
    balances = [Balance(rng=random.Random(i)) for i in range(3)]
    for tick in range(40):
        live = 3 if tick < 20 else 2  # the third dies at tick 20: its partitions free up
        if tick == 20:
            owners[2] = set()
        for i in rng.sample(range(live), live):
            taken = set().union(*owners)
            moves = balances[i].moves(owners[i], taken, live)
            owners[i] -= set(moves.release)
            owners[i] |= set(moves.claim) - taken
        if tick in (19, 39):
            held = [len(o) for o in owners[:live]]
            assert sum(held) == 16 and max(held) - min(held) <= 2 and max(held) <= share(live)


def test_partitions_are_shown_as_ranges() -> None:
    assert ranges({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert ranges(set()) == "-"
