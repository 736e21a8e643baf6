"""The JetStream API client: every request the backend sends to JetStream (stream create,
update, info, delete and purge, message gets, pulls, publishes awaiting the stream's ack) and
how each is sent again, or not, when a server or a cluster leaves it unanswered or answers
"not now". The messaging interfaces and the object store are written over it, and the driver
cleans up through it; it lives apart from them because its retries and timeouts are one policy
that every caller shares (and the mutants seed bugs in), whichever interface asks. It also
creates the streams of this backend's layout (a queue's stream and consumer, a log's stream, a
key-value bucket's stream), once per stream however many callers ask at the same time.

Every publish to a stream carries a ``Nats-Msg-Id`` (the queue message's id, else a fresh one
per publish), and every stream has a 2-minute duplicate window, so a publish left unanswered is
sent again and stored once (see :meth:`JetStream.publish`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.nuid import NUID

from prism_testkit import patience
from prism_testkit.errors import ConnectionLost, PayloadTooLarge

from .codec import StoredMsg, control_status, parse_headers

QUEUE_STREAM = "prism-q-"
LOG_STREAM = "prism-log-"
CONSUMER = "prism"
ACK_WAIT = 30.0  # seconds: the consumer's ack_wait, also the interface's default visibility timeout
API_TIMEOUT = 5.0
READ_TIMEOUT = 2 * API_TIMEOUT  # a read may be asked again (see JetStream.api)
CREATE_TIMEOUT = 3 * API_TIMEOUT  # a create with a fixed config may be sent again (see JetStream.api)
# A follower of a lost leader campaigns after nats-server's raft election timeout, 4-9 s
# (server/raft.go): how long a publish answered "no responders" is tried again on a cluster
# (x the machine's slowness where used: a loaded machine elects later; see prism_testkit.patience)
LEADERLESS_WAIT = 10.0
READ_RETRY_EVERY = 1.0  # a cluster's unanswered read is asked again this often (see JetStream.api)
PULL_GRACE = 3.0  # seconds past a pull's expiry to wait for its 408: a loaded machine lags past 1 s

NATS_MSG_ID = "Nats-Msg-Id"  # the server drops a message whose id it stored within the duplicate window
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
# The conditions a publish may carry: checked before the duplicate on a single nats-server 2.15
# (see JetStream.publish), so a resend of a stored conditional publish is refused, not deduplicated.
EXPECTED_HEADERS = frozenset(
    {EXPECTED_LAST_SUBJECT_SEQ, "Nats-Expected-Last-Sequence", "Nats-Expected-Last-Msg-Id", "Nats-Expected-Stream"}
)
DUPLICATE_WINDOW = 120.0  # seconds: every stream's, set explicitly (the server's default too)
# A publish is sent again only this long after its first send, well inside the duplicate window
RESEND_CAP = DUPLICATE_WINDOW - 2 * API_TIMEOUT

# JetStream API error codes we act on.
ERR_STREAM_NOT_FOUND = 10059
ERR_NO_MESSAGE = 10037
# "wrong last sequence": 10071 from a single server; a clustered stream's leader answers the
# constant form, 10164 (found on a 3-node nats-server 2.15 cluster: CAS failed as an error).
ERR_WRONG_LAST_SEQ = frozenset({10071, 10164})
ERR_CONSUMER_NOT_FOUND = 10014
ERR_JS_UNAVAILABLE = 10008  # "JetStream system temporarily unavailable" (503): between leaders
# "no suitable peers for placement" (peer offline): a cluster places a replicated stream only on
# peers whose statistics its metadata leader has heard, which a node just started or restarted
# has not sent yet (seen 4 times in 100 runs on a jetstream-r3 cluster settled moments before)
ERR_NO_PEERS = 10005


class ApiError(Exception):
    def __init__(self, code: int, err_code: int, description: str, *, resent: bool = False) -> None:
        self.code = code
        self.err_code = err_code
        # the answer is to a repeat of a request left unanswered, which may have taken effect
        self.resent = resent
        super().__init__(f"JetStream API error {code}/{err_code}: {description}")


class JetStream:
    """JetStream over one NATS connection, for the backend instance ``name`` (errors name it),
    whose streams are stored ``replicas`` times (the node count of a clustered instance)."""

    def __init__(self, name: str, nc: NATS, replicas: int = 1) -> None:
        self.name = name
        self.nc = nc
        self.replicas = replicas
        self._msg_ids = NUID()  # a fresh Nats-Msg-Id per logical publish (see publish)
        self._ready: set[str] = set()  # streams (and their consumers) known to exist
        self._creating: dict[str, asyncio.Task[None]] = {}  # streams being created, by name

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """A broken connection (or a request that got no answer) is ConnectionLost: the outcome
        of the operation is unknown."""
        try:
            yield
        except nats.errors.MaxPayloadError as exc:
            raise PayloadTooLarge(0, self.nc.max_payload, f"NATS message ({exc})") from exc
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.errors.StaleConnectionError,
            nats.errors.OutboundBufferLimitError,
            OSError,
        ) as exc:
            raise ConnectionLost(f"backend {self.name!r}: NATS request failed: {type(exc).__name__}: {exc}") from exc

    async def api(
        self, subject: str, body: Mapping[str, Any] | None = None, *, read: bool = False, repeatable: bool = False
    ) -> dict[str, Any]:
        """One JetStream API request. A ``read`` changes nothing, so it is asked again within a
        longer overall timeout: on a cluster every second, since a stream being created or
        between leaders drops requests unanswered (seen: a MSG.GET sent during an R3 stream's
        creation waits out any timeout, while one a moment later is answered at once); on a
        single server once, since a loaded CI machine left a STREAM.INFO unanswered for 5 s.
        A ``repeatable`` request (a create of a stream or durable consumer with a fixed config,
        answered alike when sent twice; a stream deletion, answered "not found" the second time,
        which its caller takes as done) is sent again after each full timeout, never sooner: a
        loaded CI machine left a single server's STREAM.CREATE unanswered for 5 s, a loaded
        cluster a STREAM.DELETE, and on a cluster a repeat sooner would disturb the request it
        repeats. One still answered "temporarily unavailable" (503) at its deadline ends as an
        unanswered one does, :class:`ConnectionLost`: the cluster had no leader for it all along.
        A repeatable request refused for want of placeable peers (10005) is sent again until its
        deadline too: on a cluster, a node just (re)started is placeable once its leader heard it."""
        payload = b"" if body is None else json.dumps(body).encode()
        # The overall timeout scales with the machine's slowness (prism_testkit.patience); a
        # request that is neither a read nor repeatable is sent once, waiting all of it.
        overall = (READ_TIMEOUT if read else CREATE_TIMEOUT if repeatable else API_TIMEOUT) * patience.slowness()
        retry_read_every = READ_RETRY_EVERY if self.replicas > 1 else API_TIMEOUT
        each = retry_read_every if read else API_TIMEOUT if repeatable else overall
        deadline = time.monotonic() + overall
        sends = 0
        with self.guard():
            while True:
                try:
                    sends += 1
                    reply = await self.nc.request(subject, payload, timeout=min(each, deadline - time.monotonic()))
                except nats.errors.TimeoutError:
                    if deadline - time.monotonic() < 0.05:
                        raise
                    continue
                data = json.loads(reply.data)
                # A cluster between metadata leaders answers "temporarily unavailable" (503): a
                # read or a repeatable request is asked again while the deadline allows, as an
                # unanswered one is (seen: a log read issued while a killed leader was replaced).
                code = int((data.get("error") or {}).get("err_code", 0))
                unavailable = code == ERR_JS_UNAVAILABLE
                # A create refused for want of placeable peers is sent again too, while the deadline
                # allows: a peer not yet heard from is heard within seconds. One still refused at
                # the deadline is the API error it says (too few nodes for the replicas asked).
                transient = (unavailable and (read or repeatable)) or (code == ERR_NO_PEERS and repeatable)
                if transient and self.replicas > 1 and deadline - time.monotonic() > 0.1:
                    await asyncio.sleep(0.1)
                    continue
                break
        if "error" in data:
            error = data["error"]
            if unavailable and (read or repeatable) and self.replicas > 1:
                # still between leaders at the deadline: as an unanswered request, the outcome is
                # unknown, not an API error (the leader_change suite's outage outlasting a read)
                raise ConnectionLost(
                    f"backend {self.name!r}: {subject} was answered 'temporarily unavailable' (503) until its "
                    f"deadline, {overall:.1f}s: the cluster had no leader for it"
                )
            raise ApiError(
                int(error.get("code", 0)),
                int(error.get("err_code", 0)),
                str(error.get("description")),
                resent=sends > 1,
            )
        answer: dict[str, Any] = data
        return answer

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        *,
        ensure: tuple[str, str] | None = None,
    ) -> int:
        """Publish to JetStream and wait for the stream's ack; the stored sequence.

        Every publish carries a ``Nats-Msg-Id`` (the caller's, e.g. a queue message's id, else
        a fresh one kept across this publish's resends), so it is safe to send again: a publish
        left unanswered for ``API_TIMEOUT`` (a loaded machine, a stalled server or leader) may
        have been stored, and its resend within the stream's duplicate window is answered as a
        duplicate with the original's sequence. It is sent again after each full timeout
        within the ``publish`` bound of :mod:`prism_testkit.patience` (capped at ``RESEND_CAP``);
        past it, the outcome is unknown: :class:`ConnectionLost` naming the bound.

        A single nats-server 2.15 checks a publish's conditions (``Nats-Expected-*``) before its
        duplicate: a resent conditional publish that had been stored is refused as "wrong last
        sequence" (a 3-node cluster and 2.9 answer it as a duplicate; docs/findings.md). So a
        resend refused that way is resolved by reading the subject's last message: ours (same
        id) is success with its sequence; another's leaves the outcome unknown (ours may have
        been stored and replaced), never a refusal.

        A stream deleted behind our back (``ensure`` = kind, name) is created again once. No
        responders means nobody took the message: on a cluster that is a stream between two
        leaders (after a kill, a cut or a stall), asked again for up to ``LEADERLESS_WAIT``
        seconds, as nats.go's publish retries."""
        if len(payload) > self.nc.max_payload - 4096:
            raise PayloadTooLarge(len(payload), self.nc.max_payload - 4096)
        headers = dict(headers or {})
        msg_id = headers.setdefault(NATS_MSG_ID, "prism-" + self._msg_ids.next().decode())
        conditional = not EXPECTED_HEADERS.isdisjoint(headers)
        started = time.monotonic()
        deadline = started + min(patience.bound("publish"), RESEND_CAP)
        recreated = False
        leaderless_until = started + LEADERLESS_WAIT * patience.slowness()
        sends = 0
        while True:
            with self.guard():
                try:
                    sends += 1
                    timeout = max(0.05, min(API_TIMEOUT, deadline - time.monotonic()))
                    reply = await self.nc.request(subject, payload, timeout=timeout, headers=headers)
                except nats.errors.TimeoutError:
                    if deadline - time.monotonic() < 0.05:
                        capped = f", capped at {RESEND_CAP:.0f}s" if patience.bound("publish") > RESEND_CAP else ""
                        raise ConnectionLost(
                            f"backend {self.name!r}: a publish to {subject} went unanswered {sends} time(s) in "
                            f"{time.monotonic() - started:.1f}s (bound {patience.describe('publish')}{capped}); "
                            "it may have been stored"
                        ) from None
                    continue  # unanswered, maybe stored: the same message id again
                except nats.errors.NoRespondersError:
                    if ensure is not None and not recreated and await self._missing(ensure):
                        recreated = True
                        kind, name = ensure
                        self.forget(_stream_of(kind, name))
                        await (self.ensure_queue(name) if kind == "queue" else self.ensure_log(name))
                        continue
                    if self.replicas == 1 or time.monotonic() > leaderless_until:
                        raise
                    await asyncio.sleep(0.1)
                    continue
            data = json.loads(reply.data)
            if "error" in data:
                error = data["error"]
                code, err_code = int(error.get("code", 0)), int(error.get("err_code", 0))
                refused = ApiError(code, err_code, str(error.get("description")))
                if sends > 1 and conditional and refused.err_code in ERR_WRONG_LAST_SEQ:
                    return await self._resent_outcome(data.get("stream"), subject, msg_id, refused)
                raise refused
            return int(data["seq"])

    async def _resent_outcome(self, stream: str | None, subject: str, msg_id: str, refused: ApiError) -> int:
        """The sequence of a conditional publish whose resend was refused as "wrong last
        sequence": the subject's last message when it is ours (its first send was stored);
        otherwise the outcome is unknown (:class:`ConnectionLost`)."""
        stored = None if stream is None else await self.last_msg(stream, subject)
        if stored is not None and stored.headers.get(NATS_MSG_ID) == msg_id:
            return stored.seq
        raise ConnectionLost(
            f"backend {self.name!r}: a conditional publish to {subject} went unanswered and its resend was refused "
            f"({refused}); the subject's last message is not it, so whether the first send was stored is unknown"
        )

    async def _missing(self, ensure: tuple[str, str]) -> bool:
        """Whether the stream of ``ensure`` is gone. A single server answers no responders only
        then; a cluster also between leaders, so there the API is asked."""
        return self.replicas == 1 or not await self.stream_exists(_stream_of(*ensure))

    async def create_stream(self, config: dict[str, Any]) -> None:
        await self.api(f"$JS.API.STREAM.CREATE.{config['name']}", config, repeatable=True)
        self._ready.add(config["name"])

    async def stream_exists(self, stream: str) -> bool:
        try:
            await self.api(f"$JS.API.STREAM.INFO.{stream}", read=True)
        except ApiError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                return False
            raise
        return True

    async def delete_stream(self, stream: str, *, until_unlisted: bool = True, missing_ok: bool = True) -> None:
        """Delete ``stream``; by default return once no listing names it (see
        :meth:`until_unlisted`), so a bucket deleted is gone for whoever lists next. Without
        ``missing_ok``, a stream already gone raises the API's "not found" unless that answered
        a repeat of our own unanswered request (which is taken as the one that deleted it)."""
        self.forget(stream)
        try:
            await self.api(f"$JS.API.STREAM.DELETE.{stream}", repeatable=True)
        except ApiError as exc:
            if exc.err_code != ERR_STREAM_NOT_FOUND or not (missing_ok or exc.resent):
                raise
        if until_unlisted:
            await self.until_unlisted([stream])

    def forget(self, stream: str) -> None:
        self._ready.discard(stream)

    async def _created_once(self, stream: str, create: Callable[[], Awaitable[None]]) -> None:
        """Run ``create`` for ``stream`` unless it is known to exist, once for every concurrent
        caller: on a cluster a repeated create opens a moment in which the stream takes no
        publish and answers no request (appends and reads wait out their timeout, or find no
        responders)."""
        if stream in self._ready:
            return
        task = self._creating.get(stream)
        if task is None:
            task = self._creating[stream] = asyncio.ensure_future(create())
            task.add_done_callback(lambda done: self._created(stream, done))
        await asyncio.shield(task)
        self._ready.add(stream)

    def _created(self, stream: str, task: asyncio.Task[None]) -> None:
        """A create ended. Its error is read here too: every caller still waiting gets it through
        its shield, but one that stopped waiting (abandoned under a fault) leaves it unread, and
        asyncio then prints "Task exception was never retrieved" with a traceback at exit."""
        self._creating.pop(stream, None)
        if not task.cancelled():
            task.exception()

    async def ensure_queue(self, name: str) -> None:
        await self._created_once(QUEUE_STREAM + name, lambda: self._create_queue(name))

    async def _create_queue(self, name: str) -> None:
        stream = QUEUE_STREAM + name
        await self.api(
            f"$JS.API.STREAM.CREATE.{stream}",
            {
                "name": stream,
                "subjects": [f"prism.q.{name}"],
                "retention": "workqueue",
                "storage": "file",
                "discard": "old",
                "num_replicas": self.replicas,
                "duplicate_window": int(DUPLICATE_WINDOW * 1e9),
            },
            repeatable=True,
        )
        info = await self.api(
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{CONSUMER}",
            {
                "stream_name": stream,
                "config": {
                    "durable_name": CONSUMER,
                    "deliver_policy": "all",
                    "ack_policy": "explicit",
                    "ack_wait": int(ACK_WAIT * 1e9),
                    "max_deliver": -1,
                    "max_ack_pending": -1,
                    "max_waiting": 4096,
                },
            },
            repeatable=True,
        )
        await self._until_consumer_led(stream, info)

    async def _until_consumer_led(self, stream: str, info: dict[str, Any]) -> None:
        """On a cluster, a new consumer answers pulls only once its replicas have elected a
        leader; a short receive before then found no responder and reported an empty queue
        that held acknowledged messages (seen on jetstream-r3 under load). Wait for it here,
        once per queue, not inside a receive's wait."""
        leaderless = LEADERLESS_WAIT * patience.slowness()
        deadline = time.monotonic() + leaderless
        while self.replicas > 1 and not info.get("cluster", {}).get("leader"):
            if time.monotonic() > deadline:
                raise ConnectionLost(f"consumer of {stream} has no leader after {leaderless:.0f}s")
            await asyncio.sleep(0.02)
            info = await self.api(f"$JS.API.CONSUMER.INFO.{stream}.{CONSUMER}", read=True)

    async def ensure_log(self, name: str) -> None:
        stream = LOG_STREAM + name
        await self._created_once(
            stream,
            lambda: self.create_stream(
                {
                    "name": stream,
                    "subjects": [f"prism.log.{name}"],
                    "retention": "limits",
                    "storage": "file",
                    "discard": "new",  # never drop old records: offsets must stay
                    "num_replicas": self.replicas,
                    "duplicate_window": int(DUPLICATE_WINDOW * 1e9),
                }
            ),
        )

    async def ensure_kv(self, bucket: str) -> None:
        stream = f"KV_{bucket}"
        await self._created_once(
            stream,
            lambda: self.create_stream(
                {
                    "name": stream,
                    "subjects": [f"$KV.{bucket}.>"],
                    "retention": "limits",
                    "storage": "file",
                    "discard": "new",
                    "max_msgs_per_subject": 1,
                    "allow_rollup_hdrs": True,
                    "deny_delete": True,
                    "allow_direct": True,
                    "num_replicas": self.replicas,
                    "duplicate_window": int(DUPLICATE_WINDOW * 1e9),
                }
            ),
        )

    async def pull(self, stream: str, remaining: float) -> Msg:
        """One pull request for one message: at once when ``remaining`` is (almost) 0, else
        waiting up to ``remaining`` seconds; the message, or the server's status message."""
        inbox = self.nc.new_inbox()
        if remaining < 0.01:
            body: dict[str, Any] = {"batch": 1, "no_wait": True}
            timeout = API_TIMEOUT
        else:
            body = {"batch": 1, "expires": int(remaining * 1e9)}
            timeout = remaining + PULL_GRACE
        # JetStream delivers pulled messages under their own subject, so nats-py's request
        # multiplexer cannot route them: one short-lived subscription per pull.
        with self.guard():
            sub = await self.nc.subscribe(inbox, max_msgs=1)
            try:
                await self.nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}", json.dumps(body).encode(), reply=inbox
                )
                return await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                # The server answers every pull (a message, or a 404 / 408 status). No answer means
                # it may yet hand a message to this pull once we stopped listening, and keep it
                # pending for the consumer's whole ack wait: the outcome is unknown, not "empty".
                raise ConnectionLost(f"no answer to a pull from {stream} within {timeout:.1f}s") from None
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()

    async def _msg_get(self, stream: str, request: dict[str, Any], missing_stream_ok: bool = True) -> StoredMsg | None:
        try:
            data = await self.api(f"$JS.API.STREAM.MSG.GET.{stream}", request, read=True)
        except ApiError as exc:
            if exc.err_code == ERR_NO_MESSAGE or (exc.err_code == ERR_STREAM_NOT_FOUND and missing_stream_ok):
                return None
            raise
        raw = data["message"]
        headers = parse_headers(base64.b64decode(raw["hdrs"])) if raw.get("hdrs") else {}
        return StoredMsg(int(raw["seq"]), raw["subject"], base64.b64decode(raw.get("data") or ""), headers)

    async def last_msg(self, stream: str, subject: str, *, missing_stream_ok: bool = True) -> StoredMsg | None:
        return await self._msg_get(stream, {"last_by_subj": subject}, missing_stream_ok)

    async def last_msg_direct(self, stream: str, subject: str) -> StoredMsg | None:
        """:meth:`last_msg` by a direct get: the stored message as it is, without the API's JSON
        and base64 (what nats-py's ``KeyValue.get`` asks; 1.46x faster here). Only for our
        key-value streams: created with ``allow_direct`` and one replica, so the one server that
        stores the stream answers, and no lagging replica can. On a cluster every replica answers
        direct gets, a follower that has not applied the last write too (read-your-writes broke
        on ``jetstream-r3``), so there only the stream leader, through the API, is asked. Only
        once the stream is known to exist: a direct get from a missing stream has no one to answer
        it, which nats-server 2.9 leaves to time out; until then the API answers (and says whether
        the stream exists)."""
        if self.replicas > 1:
            return await self.last_msg(stream, subject)
        if stream not in self._ready:
            stored = await self.last_msg(stream, subject)
            if stored is not None:
                self._ready.add(stream)
            return stored
        with self.guard():
            try:
                reply = await self.nc.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=API_TIMEOUT)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                # Deleted behind our back? nats-server >= 2.10 says so, 2.9 stays silent: the API
                # tells (and a server that is really gone fails there too).
                self.forget(stream)
                return await self.last_msg(stream, subject)
        status = control_status(reply)
        if status == "404":
            return None
        headers = dict(reply.headers or {})
        if status is not None or "Nats-Sequence" not in headers:
            raise ApiError(int(status or 0), 0, f"direct get from {stream}: {headers.get('Description', headers)}")
        return StoredMsg(int(headers["Nats-Sequence"]), headers.get("Nats-Subject", subject), reply.data, headers)

    async def msg_by_seq(self, stream: str, seq: int) -> StoredMsg | None:
        return await self._msg_get(stream, {"seq": seq})

    async def next_msg(self, stream: str, subject: str, seq: int) -> StoredMsg | None:
        return await self._msg_get(stream, {"seq": seq, "next_by_subj": subject})

    async def last_seq(self, stream: str) -> int:
        try:
            info = await self.api(f"$JS.API.STREAM.INFO.{stream}", read=True)
        except ApiError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                return 0
            raise
        return int(info["state"]["last_seq"])

    async def purge_subject(self, stream: str, subject: str, *, repeatable: bool = False) -> int:
        """Remove ``subject``'s messages from ``stream``; how many were removed. ``repeatable``:
        the caller needs no count (a repeat that finds the subject purged answers 0), so a
        cluster between leaders is asked again (see :meth:`api`)."""
        try:
            data = await self.api(f"$JS.API.STREAM.PURGE.{stream}", {"filter": subject}, repeatable=repeatable)
        except ApiError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                return 0
            raise
        return int(data.get("purged", 0))

    async def subjects(self, stream: str, pattern: str) -> list[str]:
        """Subjects holding messages in ``stream`` that match ``pattern`` (paged)."""
        found: list[str] = []
        offset = 0
        while True:
            try:
                info = await self.api(
                    f"$JS.API.STREAM.INFO.{stream}", {"subjects_filter": pattern, "offset": offset}, read=True
                )
            except ApiError as exc:
                if exc.err_code == ERR_STREAM_NOT_FOUND:
                    return found
                raise
            page = list((info.get("state", {}).get("subjects") or {}).keys())
            found += page
            offset += len(page)
            if not page or offset >= int(info.get("total") or 0):
                return sorted(set(found))

    async def stream_names(self) -> list[str]:
        names: list[str] = []
        offset = 0
        while True:
            data = await self.api("$JS.API.STREAM.NAMES", {"offset": offset}, read=True)
            page = data.get("streams") or []
            names += page
            offset += len(page)
            if not page or offset >= int(data.get("total") or 0):
                return names

    async def until_unlisted(self, streams: list[str]) -> None:
        """On a cluster the meta leader answers a delete before every node has applied it, and a
        listing right after may still name the stream (a purge then left a "leftover" behind
        on jetstream-r3, and so did a deleted bucket under load): a deletion ends once the
        listing no longer names what it deleted."""
        leaderless = LEADERLESS_WAIT * patience.slowness()
        deadline = time.monotonic() + leaderless
        while self.replicas > 1 and (listed := set(streams) & set(await self.stream_names())):
            if time.monotonic() > deadline:
                still = f"streams {sorted(listed)} still listed {leaderless:.0f}s after their deletion"
                raise ConnectionLost(still)
            await asyncio.sleep(0.05)


def _stream_of(kind: str, name: str) -> str:
    return (QUEUE_STREAM if kind == "queue" else LOG_STREAM) + name
