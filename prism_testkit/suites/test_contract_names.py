"""Hostile names: keys, queues, logs, groups, topics, buckets and object keys made of the
characters drivers forget to escape.

``ns.name()`` reduces a name to ``[a-z0-9-]``, so no other suite hands a driver MQTT's ``+ #``,
NATS's ``. * >``, a glob's ``* ? [ ] \\``, SQL LIKE's ``% _``, a quote, a slash, a space or
non-ASCII: a driver that passes names through unescaped passes every other suite. Here the
names are the namespace's prefix followed by characters drawn from what the backend declares
it takes (``BackendProperties.name_characters`` and ``bucket_characters``, by default every
printable ASCII character and some non-ASCII), checked both ways:

* a declared character works: a name round-trips through every interface the backend has,
  two names that differ only in it never reach each other's data (``a.b`` and ``a*b`` on NATS,
  ``a?b`` and ``axb`` under a Redis glob, ``a%2Eb`` and ``a.b`` where ``%`` escapes), a prefix
  scan or listing returns exactly the names starting with the prefix, and a purge of the
  namespace finds them all;
* a character it does not declare (and a few control characters no backend is asked for) is
  refused with ``ValueError`` / ``NotSupported``, or kept apart as a declared one is: never
  stored under another name. Each interface answers for itself: a key, a log, a queue, a
  topic (its subscriber gets what is published to it, the twin topic's subscriber does not),
  an object key in a bucket named with declared characters, and a bucket.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from prism_testkit import Capability, Driver, Message, NotSupported, PrismEnv, Slot, prism_suite
from prism_testkit.capabilities import NAME_BASE, NAME_CHARACTERS
from prism_testkit.isolation import Namespace

from ._helpers import arrival_wait, collect, prism_settings, read_all

pytestmark = prism_suite("names", backend=Slot.one_of("keyvalue", "queue", "log", "pubsub", "objects"))

# Names that differ only where an escape must work, all starting with "a" (prefix scans of one
# see the others): wildcards and separators of NATS and MQTT, globs, LIKE, percent- and
# hex-escapes spelled out literally (a driver whose escape character is not escaped itself
# stores "a.b" and "a%2Eb" alike), path segments an HTTP stack normalises, quotes, case and
# non-ASCII.
CONFUSABLE = (
    "a",
    "ab",
    "a-b",
    "a.",
    "a.b",
    "a*b",
    "a>b",
    "a.*",
    "a.>",
    "a+b",
    "a#",
    "a/b",
    "a/+",
    "a/#",
    "a/.",
    "a/..",
    "a//b",
    "a b",
    "a?b",
    "axb",
    "a[x]b",
    "a\\*b",
    "a\\.b",
    "a%b",
    "a%2Eb",
    "a%2eb",
    "a_2Eb",
    "a_2eb",
    "a_b",
    "a:b",
    "a'b",
    'a"b',
    "a`b",
    "A.b",
    "aéb",
    "a日b",
    "a🙂b",
)
# A quarter of the active profile's examples (at least 2): each makes queues, logs, topics and
# buckets, and the fixed family of names above is where most escapes are met.
FEW_EXAMPLES = max(2, settings().max_examples // 4)
# Outside every declaration: a name holding one is refused or kept apart, never aliased.
CONTROL = "\x00\t\n\x7f"


def declared(prism_env: PrismEnv, *, buckets: bool = False) -> str:
    """Every character names of this kind may hold on the backend."""
    properties = prism_env.spec("backend").properties
    return NAME_BASE + (properties.bucket_characters if buckets else properties.name_characters)


def allowed(names: Sequence[str], alphabet: str) -> list[str]:
    return [name for name in names if set(name) <= set(alphabet)]


def drawn_names(alphabet: str, *, buckets: bool = False) -> st.SearchStrategy[list[str]]:
    name = st.text(alphabet=alphabet, min_size=1, max_size=6)
    if buckets:  # S3's rule beyond its alphabet: a bucket name ends in a letter or a digit
        name = st.builds(str.__add__, st.text(alphabet=alphabet, max_size=5), st.sampled_from(NAME_BASE[:-1]))
    return st.lists(name, min_size=2, max_size=5, unique=True)


def starting_with(names: Sequence[str], prefix: str) -> list[str]:
    return sorted(name for name in names if name.startswith(prefix))


def reads_as(names: Sequence[str], got: bytes | None) -> str:
    """Whose data ``got`` is (every name's data is its index)."""
    if got is None:
        return "nothing"
    try:
        return f"the data of {names[int(got)]!r}"
    except (ValueError, IndexError):
        return repr(got)


# --- one check per interface: every name's data reachable under that name only --------------


async def check_keyvalue(driver: Driver, names: Sequence[str]) -> None:
    kv = driver.keyvalue()
    for index, name in enumerate(names):
        await kv.put(name, str(index).encode())
    for index, name in enumerate(names):
        got = await kv.get(name)
        assert got == str(index).encode(), f"key {name!r} reads {reads_as(names, got)}: keys alias"
        assert await kv.exists(name) is True, f"key {name!r} does not exist after its put"
    if driver.supports(Capability.KEYVALUE_SCAN):
        for name in names:
            found = sorted(await collect(kv.scan(name)))
            assert found == starting_with(names, name), f"scan({name!r}) is not literal: it found {found}"
    for name in names[::2]:
        assert await kv.delete(name) is True, f"delete of key {name!r} reported it missing"
    for index, name in enumerate(names):
        want = None if index % 2 == 0 else str(index).encode()
        got = await kv.get(name)
        assert got == want, f"after deleting every other key, {name!r} reads {reads_as(names, got)}"


async def check_queue(driver: Driver, names: Sequence[str]) -> None:
    """Queue ``i`` holds ``i + 1`` messages carrying its name; drained from the last queue to
    the first, a queue sharing storage with an earlier one hands out a foreign message first."""
    queue = driver.queue()
    for index, name in enumerate(names):
        for _ in range(index + 1):
            await queue.send(name, Message(name.encode(), {"queue": name}))
    for index in reversed(range(len(names))):
        name = names[index]
        for n in range(index + 1):
            delivery = await queue.receive(name, wait=arrival_wait())
            assert delivery is not None, f"queue {name!r} gave {n} of its {index + 1} messages"
            sent_to = delivery.message.payload.decode()
            assert sent_to == name, f"queue {name!r} handed out a message sent to queue {sent_to!r}: queues alias"
            await queue.ack(name, delivery)
        extra = await queue.receive(name)
        assert extra is None, f"queue {name!r} holds a message sent to {extra.message.payload.decode()!r}"


async def check_log(driver: Driver, names: Sequence[str]) -> None:
    log = driver.log()
    for index, name in enumerate(names):
        for _ in range(index + 1):
            await log.append(name, Message(name.encode()))
    for index, name in enumerate(names):
        records = await read_all(log, name)
        appended_to = sorted({r.message.payload.decode() for r in records})
        assert appended_to == [name], f"log {name!r} holds records appended to {appended_to}: logs alias"
        assert len(records) == index + 1, f"log {name!r} holds {len(records)} records, {index + 1} were appended"
        assert await log.end_offset(name) == index + 1
    # the names as consumer groups too, of one log and of another
    first, second = names[0], names[1]
    for offset, group in enumerate(names, start=1):
        await log.commit(first, group, offset)
    for offset, group in enumerate(names, start=1):
        got = await log.committed(first, group)
        assert got == offset, f"group {group!r} of log {first!r} committed {got}, not {offset}: groups alias"
        assert await log.committed(second, group) is None, f"group {group!r}'s commit on {first!r} shows on {second!r}"


async def check_pubsub(driver: Driver, names: Sequence[str]) -> None:
    """One subscriber per topic, then one message to every topic and, after them all, an end
    mark to every topic: each subscriber gets its own message and nothing else before its mark."""
    pubsub = driver.pubsub()
    subscriptions = [await pubsub.subscribe(name) for name in names]
    try:
        for name in names:
            await pubsub.publish(name, Message(name.encode()))
        for name in names:
            await pubsub.publish(name, Message(b"end", {"end": name}))
        for name, subscription in zip(names, subscriptions, strict=True):
            got: list[str] = []
            while True:
                message = await subscription.receive(arrival_wait())
                assert message is not None, f"topic {name!r}'s subscriber got {got} and then nothing"
                if message.headers.get("end") == name:
                    break
                got.append(message.headers.get("end") or message.payload.decode())
            assert got == [name], f"topic {name!r}'s subscriber received what was published to {got}: topics alias"
    finally:
        for subscription in subscriptions:
            await subscription.close()


async def check_objects(driver: Driver, names: Sequence[str], buckets: Sequence[str]) -> None:
    store = driver.objects()
    for index, bucket in enumerate(buckets):
        await store.create_bucket(bucket)
        await store.put(bucket, "k", str(index).encode())
    for index, bucket in enumerate(buckets):
        assert await store.bucket_exists(bucket) is True, f"bucket {bucket!r} does not exist after its creation"
        got = await store.get(bucket, "k")
        assert got == str(index).encode(), f"bucket {bucket!r} holds {reads_as(buckets, got)}: buckets alias"
        assert await collect(store.list_keys(bucket)) == ["k"], f"bucket {bucket!r} lists another bucket's keys"
    bucket = buckets[0]
    for index, name in enumerate(names):
        await store.put(bucket, name, str(index).encode(), metadata={"key": name})
    for index, name in enumerate(names):
        got = await store.get(bucket, name)
        assert got == str(index).encode(), f"object {name!r} reads {reads_as(names, got)}: object keys alias"
        info = await store.info(bucket, name)
        assert (info.key, dict(info.metadata)) == (name, {"key": name}), f"object {name!r}'s info: {info}"
    listed = await collect(store.list_keys(bucket))
    assert sorted(listed) == sorted([*names, "k"]), f"list_keys named {sorted(listed)}, not the keys put"
    for name in names:
        found = sorted(await collect(store.list_keys(bucket, name)))
        assert found == starting_with(names, name), f"list_keys(prefix={name!r}) is not literal: it found {found}"
    for name in names[::2]:
        await store.delete(bucket, name)
    for index, name in enumerate(names):
        assert await store.exists(bucket, name) is (index % 2 == 1), f"deleting every other object: {name!r}"


async def check_everything(prism_env: PrismEnv, ns: Namespace, names: Sequence[str], buckets: Sequence[str]) -> None:
    """Every check of an interface the backend declares, on ``names`` (and ``buckets``) under
    ``ns``; then a purge of ``ns`` must leave none of them behind."""
    driver = prism_env.driver("backend")
    full = [ns.prefix + name for name in names]
    assert len(set(full)) == len(full) >= 2
    if driver.supports(Capability.KEYVALUE):
        await check_keyvalue(driver, full)
    if driver.supports(Capability.QUEUE):
        await check_queue(driver, full)
    if driver.supports(Capability.LOG):
        await check_log(driver, full)
    if driver.supports(Capability.PUBSUB):
        await check_pubsub(driver, full)
    if driver.supports(Capability.OBJECTS):
        await check_objects(driver, full, [ns.prefix + bucket for bucket in buckets])


async def test_names_differing_only_where_an_escape_must_work_stay_apart(prism_env: PrismEnv) -> None:
    names = allowed(CONFUSABLE, declared(prism_env))
    buckets = allowed(CONFUSABLE, declared(prism_env, buckets=True))
    async with prism_env.example() as ns:
        await check_everything(prism_env, ns, names, buckets)
    assert await prism_env.leftovers(ns) == {}, "a purge of the namespace left hostile names behind"


@settings(prism_settings, max_examples=FEW_EXAMPLES)
@given(data=st.data())
async def test_names_drawn_from_the_declared_characters_round_trip(prism_env: PrismEnv, data: st.DataObject) -> None:
    names = data.draw(drawn_names(declared(prism_env)), label="names")
    buckets = data.draw(drawn_names(declared(prism_env, buckets=True), buckets=True), label="buckets")
    async with prism_env.example() as ns:
        await check_everything(prism_env, ns, names, buckets)
    assert await prism_env.leftovers(ns) == {}, "a purge of the namespace left hostile names behind"


# --- undeclared characters: refused, or kept apart ---------------------------------------


REFUSALS = (ValueError, NotSupported)


async def undeclared_key(driver: Driver, name: str, twin: str) -> None:
    kv = driver.keyvalue()
    await kv.put(name, b"hostile")
    assert await kv.get(name) == b"hostile", f"key {name!r} was stored but reads otherwise"
    assert await kv.get(twin) is None, f"key {name!r} was stored as {twin!r}"


async def undeclared_log(driver: Driver, name: str, twin: str) -> None:
    log = driver.log()
    assert await log.append(name, Message(b"hostile")) == 0
    assert await log.end_offset(twin) == 0, f"log {name!r} was stored as {twin!r}"


async def undeclared_queue(driver: Driver, name: str, twin: str) -> None:
    queue = driver.queue()
    await queue.send(name, Message(b"hostile"))
    assert await queue.receive(twin) is None, f"queue {name!r} was stored as {twin!r}"


async def undeclared_topic(driver: Driver, name: str, twin: str) -> None:
    """Kept apart as declared topics are: the subscriber of each gets what was published to it
    (within the arrival wait) and nothing published to the other before its end mark."""
    await check_pubsub(driver, [name, twin])


async def undeclared_object_key(driver: Driver, name: str, twin: str, *, bucket: str) -> None:
    store = driver.objects()
    await store.put(bucket, name, b"hostile")
    assert await store.get(bucket, name) == b"hostile", f"object {name!r} was stored but reads otherwise"
    assert await store.exists(bucket, twin) is False, f"object {name!r} was stored as {twin!r}"


async def test_undeclared_characters_are_refused_or_kept_apart(prism_env: PrismEnv) -> None:
    """A name holding a character outside the declaration is refused with ``ValueError`` (or
    ``NotSupported``), or stored under its own name, apart from the name with ``-`` instead:
    as a key, a log, a queue, a topic, an object key (in a bucket named with declared
    characters) and a bucket, each interface judged on its own (one refusing a name does not
    excuse another)."""
    driver = prism_env.driver("backend")
    names = {c for c in NAME_CHARACTERS + CONTROL if c not in declared(prism_env)}
    bucket_names = {c for c in NAME_CHARACTERS + CONTROL if c not in declared(prism_env, buckets=True)}
    kept: list[str] = []
    async with prism_env.example() as ns:
        twin = ns.prefix + "u-v"
        checks: list[tuple[str, Callable[[Driver, str, str], Awaitable[None]]]] = [
            (kind, check)
            for capability, kind, check in (
                (Capability.KEYVALUE, "key", undeclared_key),
                (Capability.LOG, "log", undeclared_log),
                (Capability.QUEUE, "queue", undeclared_queue),
                (Capability.PUBSUB, "topic", undeclared_topic),
            )
            if driver.supports(capability)
        ]
        if driver.supports(Capability.OBJECTS):
            bucket = ns.prefix + "keys"
            await driver.objects().create_bucket(bucket)
            checks.append(("object key", functools.partial(undeclared_object_key, bucket=bucket)))
        for c in sorted(names):
            name = f"{ns.prefix}u{c}v"
            for kind, check in checks:
                try:
                    await check(driver, name, twin)
                except REFUSALS:
                    continue
                kept.append(f"{kind} {name!r}")
        for c in sorted(bucket_names):
            if not driver.supports(Capability.OBJECTS):
                break
            store, bucket = driver.objects(), f"{ns.prefix}u{c}v"
            try:
                await store.create_bucket(bucket)
            except REFUSALS:
                assert await store.bucket_exists(twin) is False, f"a refused bucket {bucket!r} was created as {twin!r}"
                continue
            assert await store.bucket_exists(bucket) is True, f"bucket {bucket!r} was created but does not exist"
            assert await store.bucket_exists(twin) is False, f"bucket {bucket!r} was created as {twin!r}"
            kept.append(f"bucket {bucket!r}")
    assert await prism_env.leftovers(ns) == {}, f"a purge left names with undeclared characters {kept} behind"
