"""Email: DKIM signing, SMTP submission, inbound mail (bounces, replies)."""
