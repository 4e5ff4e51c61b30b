"""Testing helpers of the Twilio plugin: a local simulator of Twilio's Messages API."""
