# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    # A stand-in for the users' own sms_base_sr (their SMS base module for Odoo 15): the
    # sms.message schema smskit's Odoo contract describes (section 2), sms.provider and
    # sms.campaign, and the users' habit of posting a chatter note on the
    # partner for every new message. Written from that description, for smskit's tests.
    "name": "SMS base stand-in (sms_base_sr)",
    "summary": "sms.message as the users' sms_base_sr defines it, for tests",
    "version": "15.0.1.0.0",
    "category": "Hidden/Tests",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["base", "mail", "phone_validation"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
    "application": False,
}
