"""Campaigns: a named send of one template to an audience, resumable, pausable, with live totals.

::

    from smskit.outreach.campaigns import Campaigns

    campaigns = Campaigns(kit)                     # audiences by the plugins' sources
    c = campaigns.create("black-friday", "Olá {{ name }}, 20% hoje!",
                         {"type": "tags", "tags": ["vip"]})
    campaigns.start(c.id)                          # the worker does the rest
    campaigns.status(c.id).totals                  # queued, sent, delivered, replies...

How it cannot send twice: :meth:`Campaigns.advance` (called by each worker cycle) reads the
audience a page at a time after the campaign's persisted cursor and stores each page as
``outgoing`` messages through :meth:`SmsKit.send_many` with the idempotency prefix
``campaign:<id>`` (one message per phone and campaign), and only then moves the cursor with a
compare-and-set. A crash in between re-reads the same page and every key is already taken.
The worker's dispatch step then sends the messages in provider-sized batches.

Pause holds the campaign's messages that were not claimed yet (the store's ``claim_batch``
skips a paused campaign) and stops reading the audience; resume releases them. When the gateway
job ids of the campaign are known (:meth:`Campaigns.record_jobs`: Kolmeya does not say which
job a request became, so they come from its reports or an integration), pause and resume also
pause and play those jobs on the gateway.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

import attrs

from smskit.errors import ConfigurationError, NotFoundError, SmsKitError, ValidationError
from smskit.ids import new_id
from smskit.kit import SmsKit
from smskit.outreach import audience
from smskit.outreach.contacts import outreach_store
from smskit.outreach.fit import check_fit
from smskit.store.outreach import Campaign, CampaignTotals, OutreachStore
from smskit.template import Template

__all__ = ["CampaignControl", "CampaignStatus", "CampaignStep", "Campaigns", "merge_steps"]

log = logging.getLogger(__name__)

#: Recipients read and stored per page.
CHUNK_SIZE = 1000
#: Pages one :meth:`Campaigns.advance` call stores at most (all campaigns together).
MAX_CHUNKS = 10


@attrs.frozen(kw_only=True)
class CampaignStatus:
    """A campaign and its live totals."""

    campaign: Campaign
    totals: CampaignTotals


@attrs.frozen(kw_only=True)
class CampaignControl:
    """The outcome of pause/resume: the campaign, and what each gateway job answered
    (``"ok"`` or the error)."""

    campaign: Campaign
    jobs: Mapping[int, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class CampaignStep:
    """What one :meth:`Campaigns.advance` did to one campaign."""

    campaign_id: str
    name: str
    started: bool = False
    chunks: int = 0
    created: int = 0
    duplicates: int = 0
    rejected: int = 0
    canceled: int = 0
    skipped: int = 0
    finished: bool = False
    error: Optional[str] = None


class Campaigns:
    """Create, start, pause, resume, cancel and advance campaigns of one :class:`SmsKit`.

    Audiences are read by the sources the plugins register (``register_audience_sources``:
    ``csv`` and ``tags`` built in, others from plugins); ``sources`` adds to or replaces them by
    type (a source configured by hand, a test's fake). ``chunk_size`` recipients are stored per
    page; :meth:`advance` stores at most ``max_chunks`` pages per call, so one worker cycle
    stays short.
    """

    def __init__(self, kit: SmsKit, *,
                 sources: Optional[Mapping[str, audience.AudienceSource[Any]]] = None,
                 chunk_size: int = CHUNK_SIZE, max_chunks: int = MAX_CHUNKS) -> None:
        if chunk_size < 1 or max_chunks < 1:
            raise ValidationError(f"chunk_size and max_chunks must be at least 1, got "
                                  f"{chunk_size!r} and {max_chunks!r}")
        self.kit = kit
        self.chunk_size = chunk_size
        self.max_chunks = max_chunks
        self._given = dict(sources or {})
        self._sources: Optional[Dict[str, audience.AudienceSource[Any]]] = None

    @property
    def sources(self) -> Dict[str, audience.AudienceSource[Any]]:
        """The audience sources by type: the plugins' (collected on first use), then those
        given to the constructor."""
        if self._sources is None:
            self._sources = {**audience.audience_sources(self.kit.hooks), **self._given}
        return self._sources

    def audience(self, campaign: Campaign) -> audience.Audience:
        """The campaign's audience, validated by its source."""
        return audience.parse_audience(campaign.audience, self.sources)

    def describe(self, campaign: Campaign) -> str:
        """The campaign's audience in one line (its type alone when no source can read it)."""
        try:
            return self.audience(campaign).describe()
        except ValidationError:
            return f"{campaign.audience.get('type')} (no source can read it)"

    @property
    def store(self) -> OutreachStore:
        """The kit's store, which must keep campaigns."""
        return outreach_store(self.kit.store, "campaigns")

    def _now(self, now: Optional[dt.datetime] = None) -> dt.datetime:
        return (now or self.kit.clock()).astimezone(dt.timezone.utc)

    # -- definition ---------------------------------------------------------------------------
    def create(self, name: str, template: str, audience_data: Mapping[str, Any], *,
               variables: Optional[Mapping[str, Any]] = None,
               at: Optional[dt.datetime] = None, provider: Optional[str] = None) -> Campaign:
        """Store a ``draft`` campaign after checking everything that can be checked now.

        The audience is validated as data by its source, which also checks what it can (a CSV
        file must exist and have its phone column; its SHA-256 and size are recorded, so a file
        changed later is refused); the template must parse, and every variable it needs
        without a default must be one the audience's recipients carry (a CSV column; see
        :mod:`smskit.outreach.fit`) or one of ``variables``. ``at`` is when :meth:`start` lets
        it begin. ``provider`` (default: the configured one, or the routes') must exist and be
        configured (:class:`~smskit.errors.ConfigurationError` otherwise).
        """
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"campaign name must be a non-empty string, got {name!r}")
        Template(template)
        self._check_provider(provider)
        source = audience.source_for(audience_data, self.sources)
        parsed = source.prepare(source.parse(audience_data))
        check_fit(self.kit, source, parsed, template, variables or {}, provider=provider)
        if at is not None and at.tzinfo is None:
            raise ValidationError(f"at={at!r} is naive; give a timezone-aware moment")
        now = self._now()
        campaign = Campaign(id=new_id(), name=name.strip(), template=template,
                            audience=parsed.to_data(), variables=dict(variables or {}),
                            provider=provider, scheduled_at=at, created_at=now, updated_at=now)
        return self.store.add_campaign(campaign)

    def get(self, campaign_id: str) -> Campaign:
        """A campaign by id (:class:`NotFoundError` names an unknown one)."""
        campaign = self.store.get_campaign(campaign_id)
        if campaign is None:
            raise NotFoundError(f"no campaign with id {campaign_id!r}")
        return campaign

    def list_campaigns(self, statuses: Optional[Sequence[str]] = None) -> List[Campaign]:
        """Campaigns, oldest first."""
        return self.store.list_campaigns(statuses=statuses)

    def totals(self, campaign_ids: Sequence[str]) -> Dict[str, CampaignTotals]:
        """Live totals of campaigns, by aggregate queries."""
        return self.store.campaign_totals(campaign_ids)

    def status(self, campaign_id: str) -> CampaignStatus:
        """A campaign with its live totals."""
        campaign = self.get(campaign_id)
        return CampaignStatus(campaign=campaign,
                              totals=self.totals([campaign.id])[campaign.id])

    def record_jobs(self, campaign_id: str, job_ids: Sequence[int]) -> Campaign:
        """Remember the gateway job ids of a campaign (added to those already known)."""
        for job in job_ids:
            if isinstance(job, bool) or not isinstance(job, int) or job < 1:
                raise ValidationError(f"a gateway job id is a positive integer, got {job!r}")
        campaign = self.get(campaign_id)
        merged = list(dict.fromkeys([*campaign.job_ids, *job_ids]))
        return self.store.update_campaign(campaign_id, job_ids=merged, now=self._now())

    def _check_provider(self, provider: Optional[str]) -> None:
        """``provider`` (or, without one, every provider the kit routes to) exists and is
        configured: messages stored under one no worker can build would never be sent."""
        self.kit.check_providers((provider,) if provider is not None else None)

    # -- life cycle ----------------------------------------------------------------------------
    def _move(self, campaign_id: str, status: str, expected: Sequence[str], verb: str,
              now: dt.datetime, error: Optional[str] = None) -> Campaign:
        moved = self.store.set_campaign_status(campaign_id, status, expected=expected, now=now,
                                               error=error)
        if moved is None:
            current = self.get(campaign_id)
            raise ValidationError(f"campaign {campaign_id} ({current.name}) is {current.status}; "
                                  f"only a {' or '.join(expected)} campaign can be {verb}")
        return moved

    def start(self, campaign_id: str, now: Optional[dt.datetime] = None) -> Campaign:
        """Arm a draft: ``scheduled`` until its ``scheduled_at``, else ``running`` at once (the
        worker stores and sends its messages). An audience its source can no longer read as
        it was created (a CSV file that changed), or a provider no longer configured, is
        refused now."""
        moment = self._now(now)
        campaign = self.get(campaign_id)
        self._check_provider(campaign.provider)
        source = audience.source_for(campaign.audience, self.sources)
        source.check(source.parse(campaign.audience))
        later = campaign.scheduled_at is not None and campaign.scheduled_at > moment
        return self._move(campaign_id, "scheduled" if later else "running", ("draft",),
                          "started", moment, error="")

    def pause(self, campaign_id: str, now: Optional[dt.datetime] = None) -> CampaignControl:
        """Hold a running or scheduled campaign: nothing more of it is claimed or stored;
        its gateway jobs (if known) are paused too."""
        campaign = self._move(campaign_id, "paused", ("running", "scheduled"), "paused",
                              self._now(now))
        return CampaignControl(campaign=campaign, jobs=self._gateway(campaign, "pause"))

    def resume(self, campaign_id: str, now: Optional[dt.datetime] = None) -> CampaignControl:
        """Release a paused campaign (back to ``scheduled`` if it had not begun and its time has
        not come); its gateway jobs (if known) are played. A provider no longer configured
        (what paused it, perhaps) is refused now."""
        moment = self._now(now)
        campaign = self.get(campaign_id)
        self._check_provider(campaign.provider)
        waiting = (campaign.started_at is None and campaign.scheduled_at is not None
                   and campaign.scheduled_at > moment)
        resumed = self._move(campaign_id, "scheduled" if waiting else "running", ("paused",),
                             "resumed", moment, error="")
        return CampaignControl(campaign=resumed, jobs=self._gateway(resumed, "play"))

    def cancel(self, campaign_id: str, reason: str = "campaign canceled",
               now: Optional[dt.datetime] = None) -> Campaign:
        """Stop a campaign for good: its messages not yet claimed are ``canceled``."""
        moment = self._now(now)
        campaign = self._move(campaign_id, "canceled",
                              ("draft", "scheduled", "running", "paused"), "canceled", moment)
        self.store.cancel_campaign_messages(campaign_id, reason, moment)
        self._gateway(campaign, "pause")
        return campaign

    def _gateway(self, campaign: Campaign, action: str) -> Dict[int, str]:
        """Pause or play the campaign's known gateway jobs; errors are reported, not raised
        (the local hold is what guarantees nothing more is sent)."""
        if not campaign.job_ids:
            return {}
        provider = self.kit.provider(campaign.provider)
        if not provider.capabilities.job_control:
            note = f"provider {provider.name!r} cannot {action} jobs"
            return dict.fromkeys(campaign.job_ids, note)
        control = provider.pause_job if action == "pause" else provider.play_job
        answers: Dict[int, str] = {}
        for job in campaign.job_ids:
            try:
                control(job)
                answers[job] = "ok"
            except SmsKitError as exc:
                log.warning("campaign %s: %s of gateway job %s failed: %s", campaign.id, action,
                            job, exc)
                answers[job] = str(exc)
        return answers

    # -- the worker's step ----------------------------------------------------------------------
    def advance(self, now: Optional[dt.datetime] = None) -> List[CampaignStep]:
        """One worker step: start scheduled campaigns that are due, store up to ``max_chunks``
        pages of running ones, and mark ``done`` those fully stored with nothing queued."""
        moment = self._now(now)
        steps: Dict[str, CampaignStep] = {}
        for campaign in self.store.list_campaigns(statuses=("scheduled",)):
            due = campaign.scheduled_at is None or campaign.scheduled_at <= moment
            if due and self.store.set_campaign_status(campaign.id, "running",
                                                      expected=("scheduled",), now=moment):
                steps[campaign.id] = CampaignStep(campaign_id=campaign.id, name=campaign.name,
                                                  started=True)
        budget = self.max_chunks
        running = self.store.list_campaigns(statuses=("running",))
        for campaign in running:
            if campaign.materialised or budget <= 0:
                continue
            step = self._materialise(campaign, budget, moment,
                                     steps.get(campaign.id) or CampaignStep(
                                         campaign_id=campaign.id, name=campaign.name))
            budget -= max(step.chunks, 1)
            steps[campaign.id] = step
        return merge_steps(list(steps.values()), self.finish(moment))

    def finish(self, now: Optional[dt.datetime] = None) -> List[CampaignStep]:
        """Mark ``done`` the running campaigns fully stored with nothing left queued (one
        aggregate query for all of them). The worker calls it again after dispatching."""
        moment = self._now(now)
        stored = [c for c in self.store.list_campaigns(statuses=("running",)) if c.materialised]
        if not stored:
            return []
        totals = self.totals([c.id for c in stored])
        steps: List[CampaignStep] = []
        for campaign in stored:
            if totals[campaign.id].queued:
                continue
            if self.store.set_campaign_status(campaign.id, "done", expected=("running",),
                                              now=moment):
                steps.append(CampaignStep(campaign_id=campaign.id, name=campaign.name,
                                          finished=True))
        return steps

    def _materialise(self, campaign: Campaign, budget: int, now: dt.datetime,
                     step: CampaignStep) -> CampaignStep:
        cursor = campaign.cursor
        counts: Dict[str, int] = {"chunks": 0, "created": 0, "duplicates": 0, "rejected": 0,
                                  "canceled": 0, "skipped": 0}
        error: Optional[str] = None
        try:
            # A provider removed from the configuration since the start pauses the campaign
            # (below) before any page is read or stored.
            self._check_provider(campaign.provider)
            source = audience.source_for(campaign.audience, self.sources)
            parsed = source.parse(campaign.audience)
            for _ in range(budget):
                page = source.read_page(self.kit, parsed, cursor, self.chunk_size)
                summary = self.kit.send_many(
                    page.recipients, campaign.template, variables=campaign.variables,
                    phone_field=page.phone_field, idempotency_prefix=f"campaign:{campaign.id}",
                    campaign_id=campaign.id, provider=campaign.provider, dispatch=False,
                    chunk_size=self.chunk_size)
                won = self.store.advance_campaign(
                    campaign.id, expected_cursor=cursor, new_cursor=page.cursor,
                    materialised=page.done, skipped=page.skipped, now=now)
                counts["chunks"] += 1
                counts["created"] += summary.total - summary.duplicates
                counts["duplicates"] += summary.duplicates
                counts["rejected"] += summary.rejected
                counts["canceled"] += summary.canceled
                if not won:  # paused meanwhile, or another worker stored this page first
                    self._cancel_late(campaign.id, now)
                    break
                counts["skipped"] += page.skipped
                cursor = page.cursor
                if page.done:
                    break
        except (ValidationError, ConfigurationError) as exc:
            # Waiting will not fix it: hold the campaign with the reason; resume after fixing.
            error = str(exc)
            log.error("campaign %s (%s) paused: %s", campaign.id, campaign.name, exc)
            self.store.set_campaign_status(campaign.id, "paused", expected=("running",), now=now,
                                           error=error)
        except Exception as exc:  # a source or store outage: noted, retried next cycle
            error = f"{type(exc).__name__}: {exc}"
            log.exception("campaign %s (%s): storing a page failed; retrying next cycle",
                          campaign.id, campaign.name)
            self.store.update_campaign(campaign.id, last_error=error, now=now)
        return attrs.evolve(step, error=error, **{
            k: getattr(step, k) + v for k, v in counts.items()})

    def _cancel_late(self, campaign_id: str, now: dt.datetime) -> None:
        """A campaign canceled while a page of it was being stored: that page's messages,
        stored after :meth:`cancel` canceled the others, are canceled too (else they stay
        ``outgoing`` for ever, counted as queued, since nothing claims them)."""
        current = self.store.get_campaign(campaign_id)
        if current is not None and current.status == "canceled":
            self.store.cancel_campaign_messages(campaign_id, "campaign canceled", now)


def merge_steps(steps: List[CampaignStep], later: List[CampaignStep]) -> List[CampaignStep]:
    """``steps`` with ``later`` ones folded in (a campaign that finished afterwards)."""
    merged = {step.campaign_id: step for step in steps}
    for step in later:
        known = merged.get(step.campaign_id)
        if known is None:
            merged[step.campaign_id] = step
        elif step.finished:
            merged[step.campaign_id] = attrs.evolve(known, finished=True)
    return list(merged.values())
