# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    "name": "SMS through smskit (Kolmeya) with ChatRoom replies",
    "summary": "Sends SMS with smskit through Kolmeya, receives its delivery and reply "
               "webhooks, keeps sms.message, partners and chatter in step, routes replies "
               "into the acrux ChatRoom and sends agents' replies as SMS. The SMS app: "
               "messages with their history, a dashboard, scheduled sends, campaigns, "
               "the blacklist with its audit, settings.",
    "version": "15.0.2.0.0",
    "category": "Marketing/SMS",
    "license": "LGPL-3",
    "author": "smskit developers",
    "depends": ["base", "mail", "phone_validation", "whatsapp_connector", "base_setup", "sms"],
    # The distribution name: Odoo 15 looks it up with pkg_resources before trying an import.
    "external_dependencies": {"python": ["smskit-sdk"]},
    "data": [
        "data/ir_config_parameter.xml",
        "data/ir_cron.xml",
        "security/smskit_security.xml",
        "security/ir.model.access.csv",
        "views/smskit_message_views.xml",
        "views/smskit_stats_views.xml",
        "views/smskit_schedule_views.xml",
        "views/smskit_campaign_views.xml",
        "views/smskit_blacklist_views.xml",
        "views/res_config_settings_views.xml",
        "views/smskit_menus.xml",
    ],
    "installable": True,
    "application": True,
}
