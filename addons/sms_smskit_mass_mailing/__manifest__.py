# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    "name": "SMS through smskit: mass mailing statistics",
    "summary": "SMS mailings sent through smskit count delivered and bounced SMS: traces go "
               "processing, sent, delivered (sent) or bounced as Kolmeya reports.",
    "version": "15.0.1.0.0",
    "category": "Marketing/SMS",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["sms_smskit", "mass_mailing_sms"],
    "data": [],
    "installable": True,
    "auto_install": True,
    "application": False,
}
