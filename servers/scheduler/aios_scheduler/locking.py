"""One lock serialises every mutation of the scheduler's database and in-memory index."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import anyio

__all__ = ["serialized"]


class Locked(Protocol):
    _lock: anyio.Lock


OwnerT = TypeVar("OwnerT", bound=Locked)
P = ParamSpec("P")
R = TypeVar("R")


def serialized(
    method: Callable[Concatenate[OwnerT, P], Awaitable[R]],
) -> Callable[Concatenate[OwnerT, P], Awaitable[R]]:
    """Run a mutating method under its owner's lock, so dispatch decisions and the ready index
    never diverge from the database."""

    async def wrapper(owner: OwnerT, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with owner._lock:
            return await method(owner, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper
