# ruff: noqa: S608 - the views are built from this module's constants, never from input
"""The SQL views that show smskit's tables (schema ``smskit`` of this database) to Odoo.

One copy of every record: the screens read smskit's own rows through these views, and every
change goes through smskit's API (cancel, resend, blacklist, retry), never an UPDATE here.
``smskit_odoo.odoo_db`` makes the schema and gives ``messages`` and ``blacklist`` the integer
``odoo_seq`` the views use as Odoo ids. Datetimes are UTC in smskit (``timestamptz``) and are
shown as Odoo's naive UTC; costs are micro-units in smskit.

Companies: smskit has none, so a message's company is found by joins: the ``company:<id>`` tag
the addon puts on what Odoo sends, else its campaign's or its schedule's company (Odoo records),
else (a reply) the company of the message it answers. A message of none is every company's.
"""

#: The schema of smskit's tables (``smskit_odoo.odoo_db.SCHEMA``).
SCHEMA = "smskit"
#: States counted as handed to the gateway (smskit's ``SENT_OR_LATER``), and as failed.
SENT_OR_LATER = "('sent', 'delivered', 'error', 'expired')"
FAILED = "('error', 'expired')"


def _utc(column):
    return f"({column} AT TIME ZONE 'UTC')"


def _tag_company(tags):
    return f"substring({tags} from '\"company:([0-9]+)\"')::integer"


def _company(m="m", reply=None):
    """The company of message ``m`` (its tag, campaign, schedule, or the answered message)."""
    parts = [_tag_company(f"{m}.tags"), "cmp.company_id", "sch.company_id"]
    if reply:
        parts.append(_tag_company(f"{reply}.tags"))
    return f"COALESCE({', '.join(parts)})"


def _company_joins(m="m"):
    return (f"LEFT JOIN smskit_campaign cmp ON cmp.smskit_id = {m}.campaign_id "
            f"LEFT JOIN smskit_schedule sch ON sch.smskit_id = {m}.schedule_id ")


def _who(source):
    """The Odoo user a blacklist source names (``odoo:<uid>``, ``operator:<uid>``)."""
    return (f"CASE WHEN {source} ~ '^(odoo|operator):[0-9]+$' "
            f"THEN split_part({source}, ':', 2)::integer END")


def _origin(source):
    """Why a number was blacklisted, from smskit's source: a keyword reply, the gateway,
    Odoo's phone.blacklist, or an operator (the screens, the CLI, an import, the API)."""
    return (f"CASE WHEN {source} LIKE 'inbound:%%' THEN 'keyword' "
            f"WHEN {source} LIKE 'gateway:%%' THEN 'gateway' "
            f"WHEN {source} LIKE 'odoo:%%' THEN 'odoo' ELSE 'operator' END")


MESSAGE = f"""
CREATE OR REPLACE VIEW smskit_message AS (
SELECT m.odoo_seq AS id, m.id AS smskit_id, m.phone, m.body, m.direction, m.state, m.provider,
       m.provider_message_id, m.provider_request_id, m.batch_id, m.encoding,
       m.segments, m.cost / 1000000.0 AS cost,
       {_utc('m.created_at')} AS created_at, {_utc('m.scheduled_at')} AS scheduled_at,
       {_utc('m.sent_at')} AS sent_at, {_utc('m.delivered_at')} AS delivered_at,
       {_utc('m.updated_at')} AS updated_at,
       m.error_code, m.error_text, m.campaign_id AS campaign_ref, cmp.id AS campaign_id,
       m.schedule_id AS schedule_ref, sch.id AS schedule_id, m.tags, m.idempotency_key,
       m.in_reply_to AS in_reply_to_ref, r.odoo_seq AS in_reply_to_id, m.attempts,
       partner.id AS partner_id, l.odoo_id AS odoo_record_id, company.id AS company_id
  FROM {SCHEMA}.messages m
  LEFT JOIN {SCHEMA}.smskit_odoo_links l ON l.message_id = m.id
  LEFT JOIN {SCHEMA}.messages r ON r.id = m.in_reply_to
  {_company_joins()}
  LEFT JOIN res_partner partner ON partner.id = l.partner_id
  LEFT JOIN res_company company ON company.id = {_company('m', 'r')}
)"""

EVENT = f"""
CREATE OR REPLACE VIEW smskit_message_event AS (
SELECT e.id, m.odoo_seq AS message_id, e.message_id AS message_ref, e.provider, e.kind,
       e.old_state, e.new_state, e.applied, e.detail, e.provider_message_id,
       {_utc('e.created_at')} AS created_at
  FROM {SCHEMA}.events e
  LEFT JOIN {SCHEMA}.messages m ON m.id = e.message_id
)"""

# Per local day (smskit's time zone setting, as smskit's own dashboard), provider and company:
# the figures of smskit's dashboard_stats (sent = handed to the gateway, failed = error or
# expired, cost over the sent ones), with the last balance reading of the provider.
STATS = f"""
CREATE OR REPLACE VIEW smskit_stats AS (
WITH tz AS (
  SELECT COALESCE((SELECT value FROM ir_config_parameter WHERE key = 'smskit.timezone'),
                  'America/Sao_Paulo') AS name
), days AS (
  SELECT (m.created_at AT TIME ZONE tz.name)::date AS day, COALESCE(m.provider, '') AS provider,
         company.id AS company_id,
         count(*) AS messages,
         count(*) FILTER (WHERE m.state = 'outgoing') AS queued,
         count(*) FILTER (WHERE m.state IN {SENT_OR_LATER}) AS sent,
         count(*) FILTER (WHERE m.state = 'delivered') AS delivered,
         count(*) FILTER (WHERE m.state IN {FAILED}) AS failed,
         count(*) FILTER (WHERE m.state = 'rejected') AS rejected,
         count(*) FILTER (WHERE m.state = 'canceled') AS canceled,
         COALESCE(sum(m.segments) FILTER (WHERE m.state IN {SENT_OR_LATER}), 0) AS parts,
         COALESCE(sum(m.cost) FILTER (WHERE m.state IN {SENT_OR_LATER}), 0) / 1000000.0
           AS cost,
         (now() AT TIME ZONE tz.name)::date AS today
    FROM {SCHEMA}.messages m
    CROSS JOIN tz
    {_company_joins()}
    LEFT JOIN res_company company ON company.id = {_company()}
   WHERE m.direction = 'outbound'
   GROUP BY 1, 2, 3, tz.name
)
SELECT row_number() OVER (ORDER BY d.day, d.provider, d.company_id) AS id,
       d.day, d.provider, d.company_id, d.messages, d.queued, d.sent, d.delivered, d.failed,
       d.rejected, d.canceled, d.parts, d.cost,
       CASE WHEN d.sent > 0 THEN round(d.delivered * 100.0 / d.sent, 2) ELSE 0 END AS rate,
       d.day = d.today AS is_today,
       (k.value::json ->> 'balance')::numeric AS balance,
       COALESCE((k.value::json ->> 'low')::boolean, false) AS balance_low,
       ((k.value::json ->> 'checked_at')::timestamptz AT TIME ZONE 'UTC') AS balance_checked_at
  FROM days d
  LEFT JOIN {SCHEMA}.kv_state k ON k.key = 'balance:' || d.provider
)"""

BLACKLIST = f"""
CREATE OR REPLACE VIEW smskit_blacklist AS (
SELECT b.odoo_seq AS id, b.phone, b.reason, b.source, {_origin('b.source')} AS origin,
       u.id AS user_id, {_utc('b.created_at')} AS created_at,
       pb.id AS phone_blacklist_id, COALESCE(pb.active, false) AS in_phone_blacklist
  FROM {SCHEMA}.blacklist b
  LEFT JOIN res_users u ON u.id = {_who('b.source')}
  LEFT JOIN phone_blacklist pb ON pb.number = b.phone
)"""

AUDIT = f"""
CREATE OR REPLACE VIEW smskit_blacklist_audit AS (
SELECT a.id, a.phone, a.action, a.source, {_origin('a.source')} AS origin, u.id AS user_id,
       a.reason, a.campaign_id AS campaign_ref, cmp.id AS campaign_id,
       {_utc('a.created_at')} AS created_at, b.odoo_seq AS blacklist_id
  FROM {SCHEMA}.blacklist_audit a
  LEFT JOIN res_users u ON u.id = {_who('a.source')}
  LEFT JOIN smskit_campaign cmp ON cmp.smskit_id = a.campaign_id
  LEFT JOIN {SCHEMA}.blacklist b ON b.phone = a.phone
)"""

JOURNAL = f"""
CREATE OR REPLACE VIEW smskit_journal AS (
SELECT o.id, o.kind, o.key, o.message_id AS message_ref, m.odoo_seq AS message_id,
       o.payload, o.status, o.attempts, o.last_error,
       (to_timestamp(o.created_at) AT TIME ZONE 'UTC') AS created_at,
       (to_timestamp(o.lease_until) AT TIME ZONE 'UTC') AS lease_until
  FROM {SCHEMA}.smskit_odoo_ops o
  LEFT JOIN {SCHEMA}.messages m ON m.id = o.message_id
 WHERE o.status <> 'done'
)"""

#: Odoo view name -> its definition, in the order they are made.
VIEWS = {
    "smskit_message": MESSAGE,
    "smskit_message_event": EVENT,
    "smskit_stats": STATS,
    "smskit_blacklist": BLACKLIST,
    "smskit_blacklist_audit": AUDIT,
    "smskit_journal": JOURNAL,
}


def create_view(cr, name):
    """(Re)create one view with Odoo's cursor ``cr``."""
    cr.execute(f"DROP VIEW IF EXISTS {name} CASCADE")
    cr.execute(VIEWS[name])


def qualified_views():
    """The views as ``smskit_odoo.odoo_db.StoreSchema.ensure`` names them."""
    return [f"public.{name}" for name in VIEWS]
