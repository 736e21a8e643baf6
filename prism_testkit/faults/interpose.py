"""A proxy that runs hooks before or after named calls of any interface.

Suites inject faults into a pattern by handing it a wrapped driver interface: a key-value
store that raises once its process is "killed", a queue whose sends fail before or after they
reach the broker, a tier that counts its writes. Written by hand, each such wrapper repeats
every method of the interface only to delegate most of them, and a delegating method that
drifts from the interface (a keyword default, a forgotten method) silently changes what the
pattern sees. :class:`Interposed` delegates everything and runs hooks only where asked:

    kv = Interposed(inner, surface=KeyValue, before_every=lambda call: fault.check(),
                    after={"put": lambda call, result: written.append(call.arguments["key"])})

* ``before`` hooks run before the inner call; one that raises stops it (the inner call never
  happens) and its exception is what the caller gets. ``after`` hooks run once the inner call
  returned, with its result; the result itself is returned unchanged.
* ``before_every`` / ``after_every`` apply to every method; they run outside the per-name hooks
  (``before_every``, ``before[name]``, the call, ``after[name]``, ``after_every``).
* Methods of the inner object that are ``async def`` are awaited, and hooks on them may be
  async. Other methods (``scan``, which returns an async iterator, or ``transaction``, a context
  manager) are called synchronously and their result passes through as it is: hooks on them
  run at the call, not when the iterator is consumed, and must be plain functions (a plain
  method that hands out an awaitable gets its ``after`` hooks once that is awaited).
* ``surface`` (a Protocol) limits the proxy to that interface's members, as a hand-written
  wrapper was: a pattern probing ``isinstance(x, TruncatableLog)`` sees what the interface
  offers, not everything the driver object happens to have. Its methods are set on the
  instance, so ``isinstance`` against a runtime-checkable Protocol holds (Python 3.12 looks
  members up statically, past ``__getattr__``).
* A subclass may define a method itself where a fault is more than a hook (it changes a value
  or replaces the call): a method defined on the class wins over the delegated one.

Every hook gets a :class:`Call`; an invocation's ``after`` hooks get the same object its
``before`` hooks got, so a pair of hooks can key per-invocation state by it.

The proxy is not statically an instance of the interface it wraps: a caller typed by the
Protocol may need ``typing.cast``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["After", "Before", "Call", "Interposed", "members"]

T = TypeVar("T")


class Call:
    """One invocation of a proxied method: its name and the arguments it was given."""

    __slots__ = ("__weakref__", "_signature", "args", "kwargs", "name")

    def __init__(
        self,
        name: str,
        signature: Callable[[], inspect.Signature],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> None:
        self.name, self._signature, self.args, self.kwargs = name, signature, args, kwargs

    @property
    def arguments(self) -> dict[str, object]:
        """The arguments by parameter name, however they were passed (defaults not filled in).

        The names are the surface's where one was given (a backend may name its parameters
        otherwise), else the inner method's.
        """
        return dict(self._signature().bind(*self.args, **self.kwargs).arguments)

    def __repr__(self) -> str:
        return f"Call({self.name!r}, args={self.args!r}, kwargs={self.kwargs!r})"


Before = Callable[[Call], Awaitable[None] | None]
After = Callable[[Call, Any], Awaitable[None] | None]


def members(interface: type) -> frozenset[str]:
    """The public names an interface class declares (methods and annotated attributes)."""
    names: set[str] = set()
    for cls in interface.__mro__:
        if cls is object or cls is Protocol or cls is Generic:
            continue
        names.update(n for n in vars(cls) if not n.startswith("_"))
        names.update(n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_"))
    return frozenset(names)


class _Plan:
    __slots__ = ("after", "after_every", "before", "before_every", "names", "surface")

    def __init__(
        self,
        surface: type | None,
        names: frozenset[str] | None,
        before: Mapping[str, Before],
        after: Mapping[str, After],
        before_every: Before | None,
        after_every: After | None,
    ) -> None:
        self.surface, self.names, self.before, self.after = surface, names, dict(before), dict(after)
        self.before_every, self.after_every = before_every, after_every

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        befores = [h for h in (self.before_every, self.before.get(name)) if h is not None]
        afters = [h for h in (self.after.get(name), self.after_every) if h is not None]
        if not befores and not afters:
            return method
        declared = getattr(self.surface, name, None) if self.surface is not None else None

        @functools.cache
        def signature() -> inspect.Signature:
            if not inspect.isfunction(declared):
                return inspect.signature(method)
            unbound = inspect.signature(declared)
            return unbound.replace(parameters=list(unbound.parameters.values())[1:])  # without self

        if inspect.iscoroutinefunction(method):

            async def interposed_async(*args: Any, **kwargs: Any) -> Any:
                call = Call(name, signature, args, kwargs)
                for before in befores:
                    await _settle(before(call))
                result = await method(*args, **kwargs)
                for after in afters:
                    await _settle(after(call, result))
                return result

            return interposed_async

        def interposed(*args: Any, **kwargs: Any) -> Any:
            call = Call(name, signature, args, kwargs)
            for before in befores:
                _at_once(before(call), call)
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                return _then(call, result, afters)  # a plain function handing out a coroutine
            for after in afters:
                _at_once(after(call, result), call)
            return result

        return interposed


async def _then(call: Call, pending: Awaitable[Any], afters: list[After]) -> Any:
    result = await pending
    for after in afters:
        await _settle(after(call, result))
    return result


async def _settle(outcome: Awaitable[None] | None) -> None:
    if outcome is not None:
        await outcome


def _at_once(outcome: Awaitable[None] | None, call: Call) -> None:
    if outcome is None:
        return
    close = getattr(outcome, "close", None)
    if callable(close):
        close()  # a coroutine never awaited would only warn, later and elsewhere
    raise TypeError(f"an async hook on {call.name}, which is not async: its call cannot wait for the hook")


class Interposed(Generic[T]):
    """``inner`` with hooks before and after named calls (see the module docstring).

    ``inner`` stays reachable as :attr:`inner`, to act on the store around the faults.
    """

    def __init__(
        self,
        inner: T,
        *,
        surface: type | None = None,
        before: Mapping[str, Before] | None = None,
        after: Mapping[str, After] | None = None,
        before_every: Before | None = None,
        after_every: After | None = None,
    ) -> None:
        before, after = before or {}, after or {}
        names = None if surface is None else members(surface)
        for name in (*before, *after):
            if surface is not None and name not in members(surface):
                raise ValueError(f"a hook on {name!r}, which {surface.__name__} does not declare")
            if not callable(getattr(inner, name, None)):
                raise ValueError(f"a hook on {name!r}, which {type(inner).__name__} has no method of")
        self.inner = inner
        plan = _Plan(surface, names, before, after, before_every, after_every)
        self._interposed = plan
        own = type(self)
        for name in sorted(names or ()):
            if hasattr(own, name):
                continue  # the subclass's own method
            value = getattr(inner, name, None)
            if callable(value):
                self.__dict__[name] = plan.wrap(name, value)

    def __getattr__(self, name: str) -> Any:
        # Reached only for names not on the instance or its class: a non-callable member, or
        # anything of the inner object when no surface was given.
        if name.startswith("__") or name == "_interposed":
            raise AttributeError(name)
        plan: _Plan = self._interposed
        if plan.names is not None and name not in plan.names:
            raise AttributeError(f"{type(self).__name__} offers only its surface; {name!r} is not part of it")
        value = getattr(self.inner, name)
        return plan.wrap(name, value) if callable(value) else value
