"""populate's refresh, coordinated across every worker (promise 4), as the
TypeScript SDK's claimed-refresh.ts: before it reads the key source, populate
asks the server for the table's refresh claim (ClaimRefresh). Granted, it
refreshes, its calls carrying the claim, and the final call ends the claim;
held back (another refresh is running, or one finished less than
``refresh_interval`` ago), it reads no key source and goes straight to
reserving. So fifty looping workers read an expensive key source once, not
fifty times.

Held back by a running refresh of a table with nothing pending yet (a new
table, or one whose work is done), populate waits, up to ``WAIT_AT_MOST_S``
(30 s), until that refresh has queued jobs or ended, rather than return with
nothing done: workers started together on new keys share the work, as when
each refreshed. Past 30 s it returns held back as it stood, with nothing done
(a worker's next pass comes back), so that one long refresh does not stall a
worker's other tables. A table with jobs pending has work to reserve
meanwhile, and populate goes to it at once. A stop (populate's GracefulStop,
which SIGTERM/SIGINT set while populate handles signals) ends the wait too:
populate is then held back as it stood.

While a granted refresh runs, a daemon thread renews its claim every
``CLAIM_KEEPALIVE_S`` seconds, so that a key source slow to give its first
keys keeps it; ``MOST_RENEWALS`` times at most (an hour), so that a key
source that hangs does not hold the claim forever (it then lapses).

An explicit ``jobs.refresh()`` claims nothing and is never held back: its
caller asked for that refresh.

An idle worker waits for work with ``Table.wait_for_work()`` (``wait_for_work``
below): ClaimRefresh long-polls of up to a minute, which the server answers
when a job of the table becomes pending ("jobs") or when the claim comes due
and it grants it to this process ("refresh"); the populate that follows then
refreshes under that claim (asked again under its own id, it is granted
again). A claim granted to a wait whose populate never comes lapses after
``LONG_POLL_CLAIM_TIMEOUT_S``. A stop cancels the long-poll in flight
(Connection.call's ``stop``), so a worker told to stop is not held for the
rest of the minute. A wait for a populate that does not refresh
(``config.jobs.auto_refresh`` off) takes no claim: it reads the table's
counts every ``POLL_WITHOUT_LONG_POLL_S`` until a job is pending.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import grpc

from populus.config import MAX_REFRESH_INTERVAL_S
from populus.errors import PopulusError, UnavailableError
from populus.graceful_stop import GracefulStop, handle_signals
from populus.refresh import KeySource, RefreshParams, refresh_outcome
from populus.retry import RetryPolicy
from populus.rpc import Connection
from populus.v1 import job_service_pb2
from populus.wire import duration

CLAIM_KEEPALIVE_S = 200.0
"""How often a claimed refresh renews its claim while it runs, seconds: a
third of the server's claim timeout (600 s), so that a key source slow to
give its first keys keeps the claim. Renewing never takes a claim that is
free, so a renewal that crosses the final call does not take it back. (The
TypeScript SDK's CLAIM_KEEPALIVE_MS.)"""

MOST_RENEWALS = 18
"""Renewals at most of one claimed refresh (an hour at CLAIM_KEEPALIVE_S): a
key source that hangs must not hold the claim forever; the claim then lapses
(600 s after the last renewal) and another worker may refresh."""

WAIT_AT_MOST_S = 30.0
"""The longest a populate waits for another's running refresh of a table with
nothing pending, seconds, counted from before its first ClaimRefresh; past it,
populate returns held back as it stood. (The TypeScript SDK's WAIT_AT_MOST_MS.)"""

WAIT_FIRST_S = 0.25
"""The first pause between two asks of a populate waiting for another's refresh, seconds."""
WAIT_LONGEST_S = 5.0
"""The longest such pause (the pause doubles up to it), seconds."""

MAX_LONG_POLL_S = 60.0
"""The longest wait of one ClaimRefresh long-poll, seconds (the server's bound).
(The TypeScript SDK's MAX_LONG_POLL_MS.)"""

LONG_POLL_CLAIM_TIMEOUT_S = 60
"""The claim_timeout of a claim granted to a long-poll, seconds: the populate
that follows asks for it again at once (and then holds it for the server's
default); if its process stopped in between, the claim lapses this soon."""

_LONG_POLL_DEADLINE_MARGIN_S = 30.0
"""A long-poll's gRPC deadline beyond its wait: the server answers by the end
of the wait, so only a call that hangs meets it (raised as UnavailableError,
as for a server that cannot be reached)."""

POLL_WITHOUT_LONG_POLL_S = 10.0
"""How often a wait for work asks a server that cannot long-poll, seconds: one
older than ClaimRefresh's ``wait`` answers at once (asked again this much
later at most, as an idle worker asked before), one older than refresh claims
answers UNIMPLEMENTED (a pass is due this much later), and so does the
progress read of a wait without refreshes (``config.jobs.auto_refresh`` off).
(The TypeScript SDK's POLL_WITHOUT_LONG_POLL_MS.)"""

WorkFound = Optional[Literal["jobs", "refresh"]]
"""What a wait for work found: "jobs" (a job pending), "refresh" (the table's
refresh due: this process holds its claim), or None (nothing within the wait,
or stopped). (The TypeScript SDK's WorkFound.)"""

_RENEW_TIMEOUT_S = 10.0
_RENEW_POLICY = RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=1.0)


@dataclass(frozen=True)
class ClaimedRefreshOutcome:
    """What populate's refresh did: refreshed (``held_back`` None), or held back
    by another's, and then what the server said of the table."""

    held_back: Literal["running", "recent"] | None
    """None: this populate refreshed. "running": another refresh of the table
    holds the claim (in this process or anywhere). "recent": one finished less
    than the interval ago."""
    any_pending: bool | None
    """Whether the table has a pending job (False: nothing to reserve); None
    when unknown."""


class RefreshClaim:
    """A table's refresh claim in this process (one per Table object). Its id is
    the same on every populate, so that a process whose refresh failed with the
    server unreachable (the claim still held under its id) gets the claim back
    on its next pass instead of waiting out the claim's timeout; which is also
    why this process holds back its own second populate (another thread's)
    while its first one claims or refreshes."""

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        """The claim_id sent with ClaimRefresh and the claimed Refresh calls."""
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def refreshing(self) -> bool:
        """Whether a populate of this process is claiming or running the claimed refresh."""
        return self._refreshing

    def _begin(self) -> bool:
        with self._lock:
            if self._refreshing:
                return False
            self._refreshing = True
            return True

    def _end(self) -> None:
        with self._lock:
            self._refreshing = False


def claimed_refresh(
    connection: Connection,
    table: str,
    source: KeySource,
    params: RefreshParams,
    claim: RefreshClaim,
    refresh_interval: float,
    stop: GracefulStop | None = None,
    *,
    grace: float = 0.0,
    signals: bool = False,
) -> ClaimedRefreshOutcome:
    """Refreshes ``table`` from ``source`` unless another refresh of it holds
    the claim or one finished within ``refresh_interval`` seconds. ``stop``
    ends a wait for another's refresh (held back, as it stood); with
    ``signals``, SIGTERM/SIGINT set it during that wait as they do during
    populate's reserve loop (``grace``: its grace period)."""
    # Taken before ClaimRefresh is sent: two threads of this process asking under the same id would
    # both be granted (a claim asked for again under its id is granted again).
    if not claim._begin():
        return ClaimedRefreshOutcome(held_back="running", any_pending=None)
    held = True
    try:

        def ask(min_interval: float) -> job_service_pb2.ClaimRefreshResponse:
            request = job_service_pb2.ClaimRefreshRequest(table=table, claim_id=claim.id, min_interval=duration(min_interval))
            return connection.call("ClaimRefresh", request)

        # The start of a wait for a running refresh, taken before the first ask: the refresh that ask
        # may hear of as running ends after the server answered it, so after this, and a later ask's
        # min_interval of the seconds since this takes it as recent.
        asked_at = time.monotonic()
        try:
            answer = ask(refresh_interval)
        except PopulusError as err:
            if err.code != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # A server older than refresh claims: refresh as populate always did (another thread of
            # this process is not held back by it either).
            held = False
            claim._end()
            return ClaimedRefreshOutcome(held_back=None, any_pending=refresh_outcome(connection, table, source, params).any_pending)
        if _waits(answer):
            answer = _wait_for_running_refresh(answer, ask, asked_at, refresh_interval, stop, grace, signals)
        if not answer.granted:
            return ClaimedRefreshOutcome(held_back="running" if answer.running else "recent", any_pending=_any_pending(answer))
        keepalive = _Keepalive(connection, table, claim)
        try:
            try:
                outcome = refresh_outcome(connection, table, source, params, claim.id)
            finally:
                keepalive.stop()
        except BaseException:
            # Given back so that the next populate (this one's retry, or another worker's) may refresh
            # at once; if the server cannot be reached either, this process gets the claim back by its id.
            _abandon(connection, table, claim)
            raise
        return ClaimedRefreshOutcome(held_back=None, any_pending=outcome.any_pending)
    finally:
        if held:
            claim._end()


def _any_pending(answer: job_service_pb2.ClaimRefreshResponse) -> bool | None:
    return answer.any_pending if answer.HasField("any_pending") else None


def _waits(answer: job_service_pb2.ClaimRefreshResponse) -> bool:
    """Whether a populate so answered waits for the running refresh: held back by
    it with nothing pending (with jobs pending, or unknown, it goes to reserving)."""
    return not answer.granted and answer.running and _any_pending(answer) is False


def _wait_for_running_refresh(
    answer: job_service_pb2.ClaimRefreshResponse,
    ask: Callable[[float], job_service_pb2.ClaimRefreshResponse],
    asked_at: float,
    refresh_interval: float,
    stop: GracefulStop | None,
    grace: float,
    signals: bool,
) -> job_service_pb2.ClaimRefreshResponse:
    """Asks again (same claim id) until the running refresh has queued jobs or
    ended, ``stop``, or ``WAIT_AT_MOST_S`` after ``asked_at`` (taken before the
    first ask); stopped or past that, the last answer stands (held back). Each
    later ask takes any refresh that finished since ``asked_at`` as recent
    (held back, with what is pending now), while one that was given back or
    lapsed leaves the claim to this populate (granted)."""
    pause = WAIT_FIRST_S
    with handle_signals(stop, grace, signals) if stop is not None else contextlib.nullcontext():
        while _waits(answer):
            left = asked_at + WAIT_AT_MOST_S - time.monotonic()
            if left <= 0:
                break  # waited long enough: held back, as it stood (a worker's next pass comes back)
            if stop is None:
                time.sleep(min(pause, left))
            elif stop.pause(min(pause, left)):
                break  # stopped (before or during the pause): held back, as it stood
            pause = min(pause * 2, WAIT_LONGEST_S)
            # The seconds since asked_at, exactly; the server takes at most a day.
            answer = ask(min(max(refresh_interval, time.monotonic() - asked_at), MAX_REFRESH_INTERVAL_S))
    return answer


class _Keepalive:
    """Renews a granted claim every CLAIM_KEEPALIVE_S from a daemon thread until
    stopped, MOST_RENEWALS times at most (``ClaimRefresh(renew=True)``, its
    errors and its answer ignored: a claim lost meanwhile is the final call's
    business). A renewal asks with a day's min_interval: a server older than
    ``renew`` takes it for a plain claim, and answers it "recent" rather than
    take back a claim that the final call just ended."""

    def __init__(self, connection: Connection, table: str, claim: RefreshClaim) -> None:
        self._connection = connection
        self._request = job_service_pb2.ClaimRefreshRequest(
            table=table, claim_id=claim.id, renew=True, min_interval=duration(MAX_REFRESH_INTERVAL_S)
        )
        self._interval = CLAIM_KEEPALIVE_S
        self._most = MOST_RENEWALS
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"populus-refresh-claim-{table}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        renewals = 0
        while renewals < self._most and not self._stopped.wait(self._interval):
            renewals += 1
            try:
                self._connection.call("ClaimRefresh", self._request, timeout=_RENEW_TIMEOUT_S, policy=_RENEW_POLICY)
            except Exception:  # noqa: BLE001 - best effort, see above
                pass

    def stop(self) -> None:
        """Ends the renewals; a renewal in flight is waited for (so none is sent after)."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(_RENEW_TIMEOUT_S * _RENEW_POLICY.max_attempts + 5)


def _abandon(connection: Connection, table: str, claim: RefreshClaim) -> None:
    """AbandonRefresh, its failure ignored: a claim not given back lapses after
    its timeout, and this process's next populate is granted it by its id."""
    try:
        connection.call("AbandonRefresh", job_service_pb2.AbandonRefreshRequest(table=table, claim_id=claim.id))
    except Exception:  # noqa: BLE001 - best effort, see above
        pass


def wait_for_work(
    connection: Connection,
    table: str,
    claim: RefreshClaim,
    refresh_interval: float,
    wait_s: float,
    stop: GracefulStop | None = None,
    *,
    refresh: bool,
) -> WorkFound:
    """Waits up to ``wait_s`` seconds until ``table`` has work for a populate:
    "jobs" when a job is pending (answered at once if one is), "refresh" when
    the table's refresh is due (no refresh within ``refresh_interval``
    seconds, none running), whose claim this process then holds for the
    populate that follows; None when the wait ended without either, or
    ``stop`` stopped it (its call in flight is cancelled then).

    A server older than the long-poll answers at once with no work: it is
    asked again after the rest of that long-poll, ``POLL_WITHOUT_LONG_POLL_S``
    at most. One older than refresh claims (UNIMPLEMENTED) is waited out for
    the rest of the wait, ``POLL_WITHOUT_LONG_POLL_S`` at most, then answered
    "refresh" (a pass is due, as a worker slept and tried again before). With
    ``refresh`` False (a populate that does not refresh) no claim is asked
    for: the table's counts (GetProgress) are read every
    ``POLL_WITHOUT_LONG_POLL_S`` until a job is pending (a table never
    refreshed, NOT_FOUND, has none). The TypeScript SDK's waitForWork."""
    # This process is refreshing the table now: its populate will have work.
    if claim.refreshing:
        return "refresh"

    def stopped() -> bool:
        return stop is not None and stop.stopping.is_set()

    def pause(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        else:
            stop.pause(seconds)

    until = time.monotonic() + wait_s
    left = wait_s
    while left > 0 and not stopped():
        if not refresh:
            try:
                pending = connection.call("GetProgress", job_service_pb2.GetProgressRequest(table=table), stop=stop).progress.pending
            except Exception as err:
                # Cancelled by the stop (grpc.FutureCancelledError), or failed while stopping: no work.
                if stopped():
                    return None
                # A table no one refreshed yet has no jobs to wait for.
                if not (isinstance(err, PopulusError) and err.code == grpc.StatusCode.NOT_FOUND):
                    raise
                pending = 0
            if pending > 0:
                return "jobs"
            pause(min(left, POLL_WITHOUT_LONG_POLL_S))
            left = until - time.monotonic()
            continue
        poll = min(left, MAX_LONG_POLL_S)
        asked_at = time.monotonic()
        request = job_service_pb2.ClaimRefreshRequest(
            table=table,
            claim_id=claim.id,
            min_interval=duration(refresh_interval),
            claim_timeout=duration(LONG_POLL_CLAIM_TIMEOUT_S),
            wait=duration(poll),
        )
        try:
            # The server answers before this deadline; past it, a call whose connection died unnoticed fails.
            answer = connection.call("ClaimRefresh", request, timeout=poll + _LONG_POLL_DEADLINE_MARGIN_S, stop=stop)
        except Exception as err:
            # Cancelled by the stop (grpc.FutureCancelledError), or failed while stopping: no work.
            if stopped():
                return None
            if isinstance(err, PopulusError) and err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                # The server answers a long-poll before its deadline: one that never did hangs, or its connection does.
                raise UnavailableError(f"{table}: the server did not answer a wait for work within {round(poll + _LONG_POLL_DEADLINE_MARGIN_S)} s") from err
            if not (isinstance(err, PopulusError) and err.code == grpc.StatusCode.UNIMPLEMENTED):
                raise
            # A server older than refresh claims: a pass is due after a worker's sleep, as it always was.
            pause(min(left, POLL_WITHOUT_LONG_POLL_S))
            return None if stopped() else "refresh"
        if answer.granted:
            return "refresh"
        if _any_pending(answer) is True:
            return "jobs"
        # Answered well before its wait with nothing to do: a server that cannot long-poll.
        early = asked_at + poll - time.monotonic()
        if early > 0:
            pause(min(early, POLL_WITHOUT_LONG_POLL_S))
        left = until - time.monotonic()
    return None
