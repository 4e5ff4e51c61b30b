"""The send pipeline: compose, persist, dispatch and reconcile
(see :mod:`smskit.outbox.pipeline`)."""

from __future__ import annotations

from smskit.outbox.pipeline import Composer, DispatchReport, ReconcileReport, dispatch, reconcile

__all__ = ["Composer", "DispatchReport", "ReconcileReport", "dispatch", "reconcile"]
