"""Outreach: campaigns and their audiences, contacts, schedules, the blacklist's gateway sync
and balance checks. Everything here builds on the send pipeline (:mod:`smskit.outbox`)."""
