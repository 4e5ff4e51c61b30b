"""Who a scheduled send or a campaign reaches: chosen contacts, contacts with a tag, or contacts
matching a filter; always as smskit's ``odoo`` audience (an Odoo domain given as data, read
afresh by smskit when it sends)."""

import ast
import re

from odoo.exceptions import UserError

from odoo import _, api, fields, models

AUDIENCE_TYPES = [
    ("partners", "Chosen contacts"),
    ("tag", "Contacts with a tag"),
    ("domain", "Contacts matching a filter"),
]
_OBJECT = re.compile(r"\{\{\s*object\.")


def parse_domain(text):
    """An Odoo domain typed as text, read as plain data: a literal (``ast.literal_eval``: no
    names, no calls, nothing run), then checked as smskit checks every domain (fields,
    operators, values)."""
    from smskit.errors import ValidationError
    from smskit_odoo.audience import validate_domain

    try:
        value = ast.literal_eval((text or "[]").strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise UserError(_(
            "The filter must be plain data, for example [(\"city\", \"=\", \"Recife\")]: it "
            "is never run as code, so names such as uid or context_today() cannot be used."
        )) from None
    try:
        return validate_domain(value)
    except ValidationError as exc:
        raise UserError(_("The filter is not valid: %s") % exc) from None


class SmskitAudienceMixin(models.AbstractModel):
    _name = "smskit.audience.mixin"
    _description = "SMS audience and text"

    company_id = fields.Many2one("res.company", string="Company", required=True,
                                 default=lambda self: self.env.company)
    audience_type = fields.Selection(AUDIENCE_TYPES, string="Send to", required=True,
                                     default="partners")
    partner_ids = fields.Many2many("res.partner", string="Contacts")
    tag_ids = fields.Many2many("res.partner.category", string="Tags")
    domain = fields.Char("Filter", default="[]")
    phone_field = fields.Selection([("mobile", "Mobile"), ("phone", "Phone")],
                                   string="Number from", required=True, default="mobile")
    audience_count = fields.Integer("Recipients now", compute="_compute_audience_count")
    audience_error = fields.Char("Audience problem", compute="_compute_audience_count")
    sms_template_id = fields.Many2one("sms.template", string="Start from template",
                                      domain=[("model", "=", "res.partner")])
    body = fields.Text("Text", required=True,
                       help="The SMS text: {{ name }} is the contact's name, {{ partner.X }} "
                            "any field of the contact.")

    @api.onchange("sms_template_id")
    def _onchange_sms_template_id(self):
        # Odoo's SMS templates name the record {{ object }}; here it is the contact
        if self.sms_template_id.body:
            self.body = _OBJECT.sub("{{ partner.", self.sms_template_id.body)

    def _smskit_domain(self):
        """The audience as an Odoo domain (data), limited to contacts of this company or of
        none."""
        self.ensure_one()
        if self.audience_type == "partners":
            if not self.partner_ids:
                raise UserError(_("Choose at least one contact."))
            chosen = [["id", "in", self.partner_ids.ids]]
        elif self.audience_type == "tag":
            if not self.tag_ids:
                raise UserError(_("Choose at least one tag."))
            chosen = [["category_id", "in", self.tag_ids.ids]]
        else:
            chosen = parse_domain(self.domain)
        company = ["|", ["company_id", "=", False], ["company_id", "=", self.company_id.id]]
        return [*company, *chosen]  # terms side by side: all of them

    def _smskit_audience(self):
        """smskit's audience data (``{"type": "odoo", ...}``)."""
        return {"type": "odoo", "model": "res.partner", "domain": self._smskit_domain(),
                "phone_field": self.phone_field, "fields": ["name"]}

    @api.depends("audience_type", "partner_ids", "tag_ids", "domain", "phone_field",
                 "company_id")
    def _compute_audience_count(self):
        partners = self.env["res.partner"]
        for record in self:
            record.audience_count, record.audience_error = 0, False
            try:
                domain = record._smskit_domain()
            except UserError as exc:
                record.audience_error = exc.args[0] if exc.args else str(exc)
                continue
            if not record.company_id:
                continue
            record.audience_count = partners.search_count(
                [*domain, [record.phone_field, "!=", False]])
