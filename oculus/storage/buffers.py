"""Drop the dead entries of DuckDB's buffer eviction queues, which otherwise make a busy process grow for hours.

DuckDB adds an entry to one of its eight eviction queues whenever it unpins a
buffer, and each entry keeps the allocation of its block handle (about 80
bytes) alive after the buffer is freed. DuckDB removes these dead entries only
when it evicts buffers, or when a queue contains more than 32,768 entries. Every
hash join and aggregate, even on a few hundred rows, leaves dozens of them: the
writer's statements alone leave about 190 a second at 1,000 targets probed
every 5 s. Measured with duckdb 2.0.1 and heaptrack, replaying the writer's
statements: 290,000 dead handles held 23 MB after 1,200 batches, and glibc's
heap, fragmented around them, took RSS from 129 to 175 MiB in 3,600 batches.

DuckDB has no statement that drops dead entries, but it walks every queue,
dropping the dead entries on the way, while it tries to evict down to a new
memory limit. So release() requests a limit of 1 KiB, which DuckDB rejects
after the walk, and the limit stays as it was. The rejection is certain only
while more than 2 MiB of memory cannot be evicted, because DuckDB's usage
counters may lag by up to 2 MiB (buffer_pool.hpp in DuckDB's source). Otherwise
DuckDB would accept the limit, and a query starting on another thread before
the next statement restores it would fail. So during the request, release()
keeps a query open on a second cursor, whose working memory DuckDB tracks as
ALLOCATOR memory that it never evicts, and checks that it is there. With this,
the same 3,600 batches stayed at 86 to 88 MiB.
"""

from __future__ import annotations

import duckdb

# An aggregate whose result is not read to the end keeps its working memory until the result is closed. For
# this one duckdb 2.0.1 keeps 5.0 MiB of ALLOCATOR memory and nothing else, in 60 of 60 runs, and it takes
# 6 to 24 ms.
PIN_QUERY = "SELECT string_agg(k::VARCHAR) FROM range(100000) AS t(k)"
MIN_PINNED_BYTES = 3 * 2**20
UNREACHABLE_LIMIT = "1KiB"


class Outcome:
    RELEASED = "released"    # DuckDB walked its queues and kept its limit
    SKIPPED = "skipped"      # the open query kept too little memory, so no limit was requested
    ACCEPTED = "accepted"    # DuckDB accepted 1 KiB for a moment, and the limit was set back


def release(conn, pin_cursor, memory_limit: str) -> str:
    """Make DuckDB walk its eviction queues, which drops their dead entries, and return an Outcome.

    `conn` and `pin_cursor` are two connections to the same database. `memory_limit` is the limit to keep, in
    a form SET memory_limit takes. It is set again whenever the low limit was requested.
    """
    pin_cursor.execute(PIN_QUERY)
    pin_cursor.fetchone()
    try:
        pinned = conn.execute(
            "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'ALLOCATOR'").fetchone()[0]
        # NOTE: the ALLOCATOR memory of queries on other threads counts here too, so a query that kept too little
        # passes while such a query runs. The writer stops releasing after the first accepted limit.
        if pinned < MIN_PINNED_BYTES:
            return Outcome.SKIPPED
        try:
            conn.execute(f"SET memory_limit = '{UNREACHABLE_LIMIT}'")
        except duckdb.OutOfMemoryException:
            return Outcome.RELEASED
        finally:
            conn.execute(f"SET memory_limit = '{memory_limit}'")
        return Outcome.ACCEPTED
    finally:
        pin_cursor.execute("SELECT 1").fetchall()  # closes the open query and ends its read transaction
