# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    # A stand-in for the acrux ChatRoom (proprietary: the users run ChatRoom BASE 15.0.42, and
    # a newer release exists), written from the behaviour smskit's Odoo contract describes
    # (section 4; docs/acrux.md), never from its code. The real addon also depends on
    # sales_team and product; the trimmed Odoo 15 the tests run does not carry them and
    # nothing here needs them.
    "name": "ChatRoom stand-in (whatsapp_connector)",
    "summary": "acrux.chat.connector/conversation/message and new_message(data), for tests",
    "version": "15.0.1.0.0",
    "category": "Hidden/Tests",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["base", "bus", "mail"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
    "application": False,
}
