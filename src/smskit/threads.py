"""Running synchronous code from a coroutine without blocking the event loop.

:class:`smskit.AsyncSmsKit` keeps the store and the plugin hooks synchronous (SQLAlchemy Core,
pluggy) and calls them through :func:`in_thread`; a provider's async methods default to their
synchronous twins the same way. It is :func:`asyncio.to_thread` (Python 3.9+) for Python 3.8:
the call runs in ``executor`` (default: the event loop's default executor) with a copy of the
caller's :mod:`contextvars`.
"""

from __future__ import annotations

import contextvars
import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

if TYPE_CHECKING:
    import concurrent.futures

__all__ = ["in_thread"]

T = TypeVar("T")


async def in_thread(func: Callable[..., T], *args: Any,
                    executor: Optional[concurrent.futures.Executor] = None,
                    **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a worker thread of ``executor``; its result, or its
    exception, in the awaiting coroutine."""
    import asyncio

    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    return await loop.run_in_executor(executor, call)
