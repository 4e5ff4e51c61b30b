"""smskit plugin for Twilio's Programmable Messaging API (see ``docs/twilio.md``)."""
