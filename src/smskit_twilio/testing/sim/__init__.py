"""The parts of the Twilio simulator (see :mod:`smskit_twilio.testing.simulator`)."""
