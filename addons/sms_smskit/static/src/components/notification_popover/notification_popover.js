/** @odoo-module **/

// The chatter's SMS notification popover, with the statuses smskit writes (as Odoo 16/17 show
// them): "Processing" while smskit holds the SMS, "Sent" until the delivery report, then
// "Delivered" (Odoo 15 calls every 'sent' notification "Sent").
import { patch } from '@web/core/utils/patch';
import { NotificationPopover } from '@mail/components/notification_popover/notification_popover';

patch(NotificationPopover.prototype, 'sms_smskit/static/src/components/notification_popover/notification_popover.js', {
    get iconClass() {
        if (this.notification.notification_type === 'sms') {
            switch (this.notification.notification_status) {
                case 'process':
                    return 'fa fa-hourglass-half';
                case 'pending':
                    return 'fa fa-paper-plane-o';
                case 'sent':
                    return 'fa fa-check';
            }
        }
        return this._super();
    },
    get iconTitle() {
        if (this.notification.notification_type === 'sms') {
            switch (this.notification.notification_status) {
                case 'process':
                    return this.env._t("Processing");
                case 'pending':
                    return this.env._t("Sent");
                case 'sent':
                    return this.env._t("Delivered");
            }
        }
        return this._super();
    },
});
