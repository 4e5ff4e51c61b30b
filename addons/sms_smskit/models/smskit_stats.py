"""The dashboard: per local day, gateway and company, what smskit sent, delivered and failed,
the delivery rate and the cost, with the gateway's last balance reading (a SQL view)."""

from odoo import api, fields, models


def _base(spec):
    """``"rate:avg"`` -> ``"rate"``."""
    return spec.split(":", 1)[0].strip()


class SmskitStats(models.Model):
    _name = "smskit.stats"
    _inherit = ["smskit.view.mixin"]
    _description = "SMS dashboard"
    _auto = False
    _order = "day desc, provider"
    _rec_name = "day"

    day = fields.Date("Day", readonly=True)
    provider = fields.Char("Gateway", readonly=True)
    company_id = fields.Many2one("res.company", string="Company", readonly=True)
    messages = fields.Integer("Messages", readonly=True)
    queued = fields.Integer("Queued", readonly=True)
    sent = fields.Integer("Sent", readonly=True)
    delivered = fields.Integer("Delivered", readonly=True)
    failed = fields.Integer("Failed", readonly=True)
    rejected = fields.Integer("Rejected", readonly=True)
    canceled = fields.Integer("Canceled", readonly=True)
    parts = fields.Integer("Parts", readonly=True)
    cost = fields.Float("Cost", digits=(12, 2), readonly=True)
    # delivered / sent of each group, recomputed from the sums by read_group (an average of
    # the rows' rates would weigh a day of 3 messages like a day of 3,000)
    rate = fields.Float("Delivery rate (%)", digits=(5, 2), readonly=True,
                        group_operator="avg")
    is_today = fields.Boolean("Today", readonly=True)
    balance = fields.Float("Balance", digits=(12, 2), readonly=True, group_operator=False)
    balance_low = fields.Boolean("Balance below the threshold", readonly=True)
    balance_checked_at = fields.Datetime("Balance read at", readonly=True)

    @api.model
    def read_group(self, domain, fields, groupby, offset=0, limit=None, orderby=False,
                   lazy=True):
        """As Odoo's, except ``rate``: delivered * 100 / sent of the group's sums."""
        wants_rate = any(_base(f) == "rate" for f in fields)
        if wants_rate:
            fields = [f for f in fields if _base(f) != "rate"]
            have = {_base(f) for f in fields}
            fields += [f"{name}:sum" for name in ("sent", "delivered") if name not in have]
        if orderby:
            # ordering by the rate would order by a column the query no longer reads
            orderby = ",".join(part for part in orderby.split(",")
                               if _base(part.strip().split(" ")[0]) != "rate") or False
        groups = super().read_group(domain, fields, groupby, offset=offset, limit=limit,
                                    orderby=orderby, lazy=lazy)
        if wants_rate:
            for group in groups:
                sent = group.get("sent") or 0
                group["rate"] = round((group.get("delivered") or 0) * 100.0 / sent, 2) \
                    if sent else 0.0
        return groups
