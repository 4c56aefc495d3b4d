"""Each compiled kernel against its pure-Python reference, on realistic sizes.

Every benchmark is parametrized over ``impl`` in ``["reference", "compiled"]``, so one run gives
the speed-up of each kernel. Each timed call does a fixed batch of operations (the constants
below; distinct inputs, built in ``setup``) so that a single call of the compiled kernel takes
about a millisecond: ``asv run --quick`` times exactly one call, and on a shared machine a call
that short is at the mercy of the scheduler.
The sizes follow the foundation issue: a 5-voter quorum (simple and joint), a 100k-entry log
index, a batch of 1,000 proposals of 256 bytes, and codec round trips of 64 entries of 256 bytes.
"""

from __future__ import annotations

import random
import time

from dengine._core import load

IMPLS = ["reference", "compiled"]

QUORUM_CASES = 1000  # distinct match / vote dicts
QUORUM_ROUNDS = 8  # passes over them per timed call
LOG_ENTRIES = 100_000
LOG_LOOKUPS = 50_000  # term lookups per timed call
LOG_APPENDS = 10_000  # single appends per timed call
LOG_CONFLICTS = 1000  # find_conflict calls per timed call
LOG_SEARCHES = 100  # backtracking searches per timed call (the reference scans linearly)
CONFLICT_WINDOW = 64  # entries in one incoming append (find_conflict)
TERM_EVERY = 1000  # a new term every this many entries: 100 terms over the log
PROPOSALS = 1000
PROPOSAL_BYTES = 256
CODEC_ENTRIES = 64
CODEC_PAYLOAD_BYTES = 256
BATCH_ROUNDS = 10  # fill-and-empty rounds of the batch buffer per timed call
REPS = 50  # codec batches per timed call
COMMANDS = 5000  # KV commands per timed call


def kernel(name: str, impl: str):
    return load(name, compiled=impl == "compiled")


class KernelBench:
    """Parametrized over the implementations; timed in process CPU time.

    The kernels are single-threaded and CPU-bound, and the machines they are measured on are
    often shared: CPU time leaves out the time other processes hold the core, which wall time
    would charge to whichever implementation happened to be running.
    """

    params = IMPLS
    param_names = ["impl"]
    timer = time.process_time


class Quorum(KernelBench):
    """Commit index and vote tally of a 5-voter config, and of a joint 5+5 one (3 shared)."""

    def setup(self, impl):
        self.q = kernel("quorum", impl)
        rnd = random.Random(1)
        self.voters = (1, 2, 3, 4, 5)
        self.outgoing = (3, 4, 5, 6, 7)
        self.matches = [
            {v: rnd.randint(900_000, 1_000_000) for v in range(1, 8)} for _ in range(QUORUM_CASES)
        ] * QUORUM_ROUNDS
        self.votes = [
            {v: rnd.random() < 0.6 for v in range(1, 8) if rnd.random() < 0.8}
            for _ in range(QUORUM_CASES)
        ] * QUORUM_ROUNDS

    def time_commit_index(self, impl):
        f, voters = self.q.commit_index, self.voters
        for m in self.matches:
            f(voters, m)

    def time_joint_commit_index(self, impl):
        f, a, b = self.q.joint_commit_index, self.voters, self.outgoing
        for m in self.matches:
            f(a, b, m)

    def time_vote_result(self, impl):
        f, voters = self.q.vote_result, self.voters
        for v in self.votes:
            f(voters, v)

    def time_joint_vote_result(self, impl):
        f, a, b = self.q.joint_vote_result, self.voters, self.outgoing
        for v in self.votes:
            f(a, b, v)


def log_terms(n: int) -> list[int]:
    return [1 + i // TERM_EVERY for i in range(n)]


class LogIndexBuild(KernelBench):
    """Building the index of a 100k-entry log from its terms."""

    def setup(self, impl):
        self.cls = kernel("log_index", impl).LogIndex
        self.terms = log_terms(LOG_ENTRIES)

    def time_build(self, impl):
        self.cls(0, 0).extend(self.terms)


class LogIndexLookups(KernelBench):
    """Term lookups, conflict search and fast-backtracking searches on a 100k-entry log."""

    def setup(self, impl):
        self.log = log = kernel("log_index", impl).LogIndex(0, 0)
        log.extend(log_terms(LOG_ENTRIES))
        rnd = random.Random(2)
        self.indexes = [rnd.randint(1, LOG_ENTRIES) for _ in range(LOG_LOOKUPS)]
        last_term = log.last_term
        # incoming appends: a window of the follower's own log whose last entry conflicts
        self.appends = []
        for _ in range(LOG_CONFLICTS):
            first = rnd.randint(1, LOG_ENTRIES - CONFLICT_WINDOW)
            terms = log.terms(first, first + CONFLICT_WINDOW)
            terms[-1] = last_term + 1
            self.appends.append((first, terms))
        self.queries = [
            (rnd.randint(1, last_term), rnd.randint(1, LOG_ENTRIES)) for _ in range(LOG_SEARCHES)
        ]

    def time_term(self, impl):
        term = self.log.term
        for i in self.indexes:
            term(i)

    def time_match_term(self, impl):
        match = self.log.match_term
        for i in self.indexes:
            match(i, 7)

    def time_find_conflict(self, impl):
        find = self.log.find_conflict
        for first, terms in self.appends:
            find(first, terms)

    def time_last_index_with_term_at_most(self, impl):
        search = self.log.last_index_with_term_at_most
        for term, max_index in self.queries:
            search(term, max_index)

    def time_first_index_of_term(self, impl):
        search = self.log.first_index_of_term
        for term, _ in self.queries:
            search(term)


class LogIndexCompact(KernelBench):
    """Compacting a 100k-entry log in 100 steps of 1,000 entries (snapshots as the log grows).

    Destructive, so each timed call gets a freshly built log (``number = 1``).
    """

    number = 1

    def setup(self, impl):
        self.log = kernel("log_index", impl).LogIndex(0, 0)
        self.log.extend(log_terms(LOG_ENTRIES))

    def time_compact(self, impl):
        compact = self.log.compact
        for index in range(1000, LOG_ENTRIES + 1, 1000):
            compact(index)


class LogIndexAppend(KernelBench):
    """A leader appending 10,000 entries one by one onto a 100k-entry log, then truncating
    them again (as a follower overwritten by a new leader) so the call can repeat."""

    def setup(self, impl):
        self.log = kernel("log_index", impl).LogIndex(0, 0)
        self.log.extend(log_terms(LOG_ENTRIES))
        self.term = self.log.last_term + 1

    def time_append_truncate(self, impl):
        log, term = self.log, self.term
        append = log.append
        for _ in range(LOG_APPENDS):
            append(term)
        log.truncate_after(LOG_ENTRIES)


class Batch(KernelBench):
    """1,000 proposals of 256 bytes pushed, then taken out in bounded batches (BATCH_ROUNDS
    times per call)."""

    def setup(self, impl):
        self.cls = kernel("batch", impl).BatchBuffer
        self.payloads = [bytes([i % 256]) * PROPOSAL_BYTES for i in range(PROPOSALS)]
        self.tokens = list(range(PROPOSALS))

    def time_push_pop(self, impl):
        buf = self.cls(128, 64 * 1024)
        push, pop = buf.push, buf.pop_batch
        for _ in range(BATCH_ROUNDS):
            for payload, token in zip(self.payloads, self.tokens, strict=True):
                push(payload, token)
            while len(buf):
                pop()


class Codec(KernelBench):
    """WAL framing of 64 entries of 256 bytes (REPS distinct batches per call), and KV
    command encode/decode (COMMANDS per call)."""

    def setup(self, impl):
        self.c = c = kernel("codec", impl)
        rnd = random.Random(3)
        self.batches = []
        for r in range(REPS):
            self.batches.append(
                [
                    (7, 1 + r * CODEC_ENTRIES + i, 0, rnd.randbytes(CODEC_PAYLOAD_BYTES))
                    for i in range(CODEC_ENTRIES)
                ]
            )
        ref = kernel("codec", "reference")
        self.encoded = [ref.encode_entry_records(b) for b in self.batches]
        self.puts = [
            (b"key-%08d" % i, rnd.randbytes(CODEC_PAYLOAD_BYTES)) for i in range(COMMANDS)
        ]
        self.commands = [ref.encode_put(k, v) for k, v in self.puts]
        self.sessions = [
            ref.encode_session(42, i, cmd) for i, cmd in enumerate(self.commands)
        ]
        assert c.decode_entry_records(self.encoded[0])[0] == self.batches[0]

    def time_encode_entry_records(self, impl):
        encode = self.c.encode_entry_records
        for batch in self.batches:
            encode(batch)

    def time_decode_entry_records(self, impl):
        decode = self.c.decode_entry_records
        for buf in self.encoded:
            decode(buf)

    def time_encode_put(self, impl):
        encode = self.c.encode_put
        for key, value in self.puts:
            encode(key, value)

    def time_decode_command(self, impl):
        decode = self.c.decode_command
        for cmd in self.sessions:
            decode(cmd)
