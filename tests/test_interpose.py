"""The interposing proxy the suites build their in-process faults from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import pytest

from prism_testkit.faults.interpose import Call, Interposed, members


@runtime_checkable
class Store(Protocol):
    label: str

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> str: ...
    def scan(self, prefix: str) -> AsyncIterator[str]: ...


@runtime_checkable
class Truncatable(Protocol):
    async def truncate(self, before: int) -> None: ...


class Inner:
    """A store that logs what reached it."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.label = "first"
        self.keys = ["a/1", "a/2", "b/1"]

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
        self.log.append(f"inner put {key}")
        if key == "bad":
            raise KeyError(key)
        return f"stored {key}"

    def scan(self, prefix: str) -> AsyncIterator[str]:
        self.log.append(f"inner scan {prefix}")
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        for key in self.keys:
            if key.startswith(prefix):
                yield key

    async def truncate(self, before: int) -> None:
        self.log.append("inner truncate")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(it: AsyncIterator[str]) -> list[str]:
    return [x async for x in it]


def test_hooks_run_in_order_around_the_call_and_the_result_is_unchanged() -> None:
    log: list[str] = []
    seen: list[object] = []

    def after_put(call: Call, result: object) -> None:
        log.append("after put")
        seen.append(result)

    proxy = Interposed(
        Inner(log),
        before_every=lambda call: log.append(f"every before {call.name}"),
        before={"put": lambda call: log.append("before put")},
        after={"put": after_put},
        after_every=lambda call, result: log.append(f"every after {call.name}"),
    )
    assert run(proxy.put("k", b"v")) == "stored k"
    assert log == ["every before put", "before put", "inner put k", "after put", "every after put"]
    assert seen == ["stored k"]


def test_async_hooks_are_awaited_before_the_call_goes_on() -> None:
    log: list[str] = []

    async def slow_before(call: Call) -> None:
        await asyncio.sleep(0)
        log.append("before done")

    async def slow_after(call: Call, result: object) -> None:
        await asyncio.sleep(0)
        log.append(f"after saw {result}")

    proxy = Interposed(Inner(log), before={"put": slow_before}, after={"put": slow_after})
    run(proxy.put("k", b"v"))
    assert log == ["before done", "inner put k", "after saw stored k"]


def test_a_raising_before_hook_stops_the_inner_call_and_its_exception_reaches_the_caller() -> None:
    log: list[str] = []
    boom = ConnectionError("injected")

    def refuse(call: Call) -> None:
        raise boom

    proxy = Interposed(Inner(log), before={"put": refuse}, after={"put": lambda c, r: log.append("after")})
    with pytest.raises(ConnectionError) as raised:
        run(proxy.put("k", b"v"))
    assert raised.value is boom
    assert log == [], "the inner call (or an after hook) ran past a raising before hook"


def test_the_inner_calls_exception_propagates_and_skips_the_after_hooks() -> None:
    log: list[str] = []
    proxy = Interposed(Inner(log), after={"put": lambda c, r: log.append("after")})
    with pytest.raises(KeyError):
        run(proxy.put("bad", b"v"))
    assert log == ["inner put bad"]


def test_a_raising_after_hook_raises_once_the_inner_call_happened() -> None:
    log: list[str] = []

    def lose_answer(call: Call, result: object) -> None:
        raise TimeoutError("answer lost")

    proxy = Interposed(Inner(log), after={"put": lose_answer})
    with pytest.raises(TimeoutError):
        run(proxy.put("k", b"v"))
    assert log == ["inner put k"]


def test_an_async_iterator_method_is_hooked_at_the_call_and_yields_the_inner_items() -> None:
    log: list[str] = []
    proxy = Interposed(Inner(log), before={"scan": lambda call: log.append(f"before scan {call.args[0]}")})
    it = proxy.scan("a/")
    assert log == ["before scan a/", "inner scan a/"], "the hook ran lazily, or the scan was not called at once"
    assert run(collect(it)) == ["a/1", "a/2"]


def test_a_raising_hook_on_an_async_iterator_method_stops_the_scan() -> None:
    log: list[str] = []

    def dead(call: Call) -> None:
        raise RuntimeError("killed")

    proxy = Interposed(Inner(log), before={"scan": dead})
    with pytest.raises(RuntimeError, match="killed"):
        proxy.scan("a/")
    assert log == []


def test_an_async_hook_on_a_plain_method_is_refused_before_the_inner_call() -> None:
    log: list[str] = []

    async def late(call: Call) -> None:
        log.append("hook body ran")

    proxy = Interposed(Inner(log), before={"scan": late})
    with pytest.raises(TypeError, match="scan"):
        proxy.scan("a/")
    assert log == []


def test_non_callable_attributes_pass_through_and_stay_live() -> None:
    inner = Inner([])
    proxy = Interposed(inner, before_every=lambda call: None)
    assert proxy.label == "first"
    inner.label = "second"
    assert proxy.label == "second"
    assert proxy.keys is inner.keys
    surfaced = Interposed(inner, surface=Store)
    assert surfaced.label == "second", "an attribute the surface declares was hidden"


def test_the_surface_limits_what_the_proxy_offers() -> None:
    inner = Inner([])
    proxy = Interposed(inner, surface=Store, before_every=lambda call: None)
    assert members(Store) == {"label", "put", "scan"}
    assert isinstance(inner, Truncatable)
    assert isinstance(proxy, Store)
    assert not isinstance(proxy, Truncatable), "the proxy offered a method its surface lacks"
    with pytest.raises(AttributeError):
        getattr(proxy, "truncate")  # noqa: B009 (the attribute is not there to name)
    assert isinstance(Interposed(inner), Truncatable), "without a surface everything of the inner is offered"


def test_a_hook_on_a_name_the_interface_lacks_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="pt"):
        Interposed(Inner([]), surface=Store, before={"pt": lambda call: None})
    with pytest.raises(ValueError, match="nothing"):
        Interposed(Inner([]), after={"nothing": lambda call, result: None})
    with pytest.raises(ValueError, match="truncate"):
        Interposed(Inner([]), surface=Store, before={"truncate": lambda call: None})


def test_hooks_see_one_call_per_invocation_with_its_arguments_by_name() -> None:
    calls: list[Call] = []
    afters: list[Call] = []
    proxy = Interposed(
        Inner([]),
        before={"put": lambda call: calls.append(call)},
        after={"put": lambda call, result: afters.append(call)},
    )
    run(proxy.put("k1", b"v", ttl=3.0))
    run(proxy.put(key="k2", value=b"w"))
    assert [c.name for c in calls] == ["put", "put"]
    assert calls[0].arguments == {"key": "k1", "value": b"v", "ttl": 3.0}
    assert calls[1].arguments == {"key": "k2", "value": b"w"}
    assert afters[0] is calls[0]
    assert afters[1] is calls[1]
    assert calls[0] is not calls[1]


def test_a_method_the_subclass_defines_wins_over_the_delegated_one() -> None:
    log: list[str] = []

    class Swallowing(Interposed[Inner]):
        async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> str:
            log.append(f"swallowed {key}")
            return "pretend"

    proxy = Swallowing(Inner(log), surface=Store, before={"scan": lambda call: log.append("before scan")})
    assert run(proxy.put("k", b"v")) == "pretend"
    proxy.scan("a/")
    assert log == ["swallowed k", "before scan", "inner scan a/"]


def test_a_plain_method_handing_out_an_awaitable_gets_its_after_hooks_once_awaited() -> None:
    log: list[str] = []

    class Deferred:
        def later(self) -> Any:
            async def go() -> int:
                log.append("inner ran")
                return 7

            return go()

    proxy = Interposed(Deferred(), after={"later": lambda call, result: log.append(f"after {result}")})
    pending = proxy.later()
    assert log == []
    assert run(pending) == 7
    assert log == ["inner ran", "after 7"]


def test_arguments_are_named_as_the_surface_names_them_whatever_the_backend_calls_them() -> None:
    class Terse:
        label = "t"

        async def put(self, k: str, v: bytes, *, ttl: float | None = None) -> str:
            return k

        def scan(self, p: str) -> AsyncIterator[str]:
            raise NotImplementedError

    keys: list[object] = []
    proxy = Interposed(Terse(), surface=Store, before={"put": lambda call: keys.append(call.arguments["key"])})
    run(proxy.put("k1", b"v"))
    bare = Interposed(Terse(), before={"put": lambda call: keys.append(call.arguments["k"])})
    run(bare.put("k2", b"v"))
    assert keys == ["k1", "k2"]
