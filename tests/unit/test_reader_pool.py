"""The pool of threads that read runs' pipes."""

import threading

from crawlhub.worker.output import ReaderPool


def test_a_finished_reader_takes_the_next_pipe_and_a_busy_one_is_never_given_one() -> None:
    pool = ReaderPool()
    seen: list[str] = []
    go = threading.Event()  # the first three pipes end together: three threads

    def read(n: int) -> None:
        go.wait(5)
        seen.append(str(n))

    first = [pool.start(read, n) for n in range(3)]
    go.set()
    for reading in first:
        reading.join(5)
        assert not reading.is_alive()
    threads = {t.ident for t in threading.enumerate() if t.name == "output-reader"}

    held = threading.Event()
    busy = pool.start(held.wait)  # a pipe someone holds open: its thread stays busy
    later = [pool.start(lambda: None) for _ in range(3)]
    for reading in later:
        reading.join(5)
        assert not reading.is_alive()
    assert busy.is_alive()
    now = {t.ident for t in threading.enumerate() if t.name == "output-reader"}
    assert len(now - threads) <= 1  # three were idle: one new thread at most, for the fourth
    held.set()
    busy.join(5)
    assert not busy.is_alive() and len(seen) == 3


def test_a_reader_that_raises_keeps_its_thread_for_the_next_pipe() -> None:
    pool = ReaderPool()

    def fails() -> None:
        raise SystemExit(3)

    failed = pool.start(fails)
    failed.join(5)
    assert not failed.is_alive()
    after = pool.start(lambda: None)
    after.join(5)
    assert not after.is_alive()  # served: the thread counted idle is alive
