"""Several gateways: which provider sends each message, failover, and per-provider settings.

* :mod:`~smskit.routing.rules`: the route table (``SMSKIT_ROUTES``) and price tables, as data;
* :mod:`~smskit.routing.policies`: each provider's prices, rate limit, quiet-hours exception
  and balance threshold (``SMSKIT_<PROVIDER>_*``);
* :mod:`~smskit.routing.circuit`: circuit breakers, opened by "sent nothing" failures;
* :mod:`~smskit.routing.limits`: pacing under ``<provider>_max_per_second``;
* :mod:`~smskit.routing.router`: :class:`Router`, the route of each message (the
  ``route_outbound`` hook first, then the table) and the dispatcher's policy.
"""

from smskit.routing.circuit import Circuits, CircuitState, read_circuits
from smskit.routing.limits import RateLimiter
from smskit.routing.policies import ProviderPolicies
from smskit.routing.router import Router
from smskit.routing.rules import PriceTable, RouteRule, RouteTable

__all__ = [
    "CircuitState",
    "Circuits",
    "PriceTable",
    "ProviderPolicies",
    "RateLimiter",
    "RouteRule",
    "RouteTable",
    "Router",
    "read_circuits",
]
