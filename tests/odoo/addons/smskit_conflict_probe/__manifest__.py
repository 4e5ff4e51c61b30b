# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    # Fault injection for smskit's real Odoo tests, inert until a test sets its system
    # parameters: a concurrent update that makes Odoo run a request again, and a process
    # that dies right after its commit. Never installed by users.
    "name": "smskit conflict probe (tests)",
    "summary": "Concurrency faults on Odoo's SMS path, for smskit's tests",
    "version": "15.0.1.0.0",
    "category": "Hidden/Tests",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["sms", "whatsapp_connector", "sms_smskit"],
    "installable": True,
    "application": False,
}
