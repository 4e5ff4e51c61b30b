# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    "name": "SMS through smskit (Kolmeya) with ChatRoom replies",
    "summary": "Sends SMS with smskit through Kolmeya, receives its delivery and reply "
               "webhooks, keeps sms.message, partners and chatter in step, routes replies "
               "into the acrux ChatRoom and sends agents' replies as SMS.",
    "version": "15.0.1.1.0",
    "category": "Marketing/SMS",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["base", "mail", "phone_validation", "whatsapp_connector"],
    # The distribution name: Odoo 15 looks it up with pkg_resources before trying an import.
    "external_dependencies": {"python": ["smskit-sdk"]},
    "data": [
        "data/ir_config_parameter.xml",
        "data/ir_cron.xml",
    ],
    "installable": True,
    "application": False,
}
