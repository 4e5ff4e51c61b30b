# ruff: noqa: B018 - an Odoo manifest is one dict expression
{
    "name": "SMS through smskit (Kolmeya)",
    "summary": "Sends Odoo's SMS (composer, templates, chatter, mass SMS) and yours with "
               "smskit through Kolmeya, receives its delivery and reply webhooks, keeps "
               "sms.sms, sms.message, partners, chatter and mailing statistics in step. The "
               "SMS app: messages with their history, a dashboard, scheduled sends, "
               "campaigns, the blacklist with its audit, Odoo writes to retry, settings.",
    "version": "15.0.2.0.0",
    "category": "Marketing/SMS",
    "license": "LGPL-3",
    "author": "smskit developers",
    # the ChatRoom part is sms_smskit_chatroom, mass mailing statistics sms_smskit_mass_mailing
    # (both installed by themselves where their Odoo modules are)
    "depends": ["base", "base_setup", "mail", "phone_validation", "sms"],
    # The distribution name: Odoo 15 looks it up with pkg_resources before trying an import.
    "external_dependencies": {"python": ["smskit-sdk"]},
    "data": [
        "data/ir_config_parameter.xml",
        "data/ir_cron.xml",
        "security/smskit_security.xml",
        "security/ir.model.access.csv",
        "views/sms_resend_views.xml",
        "views/smskit_message_views.xml",
        "views/smskit_stats_views.xml",
        "views/smskit_schedule_views.xml",
        "views/smskit_campaign_views.xml",
        "views/smskit_blacklist_views.xml",
        "views/res_config_settings_views.xml",
        "views/smskit_menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "sms_smskit/static/src/components/notification_popover/notification_popover.js",
        ],
    },
    "installable": True,
    "application": True,
}
