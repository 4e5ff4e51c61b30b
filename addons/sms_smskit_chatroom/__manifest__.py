# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    "name": "SMS through smskit: ChatRoom",
    "summary": "Agents' replies in an SMS ChatRoom conversation go out through smskit "
               "(blacklist, quiet hours), show their delivery state, and the SMS connector "
               "counts what it sent and received.",
    "version": "15.0.1.0.0",
    "category": "Marketing/SMS",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["sms_smskit", "whatsapp_connector"],
    "data": [],
    "installable": True,
    "auto_install": True,
    "application": False,
}
