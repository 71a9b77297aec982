"""Email: DKIM signing (RFC 6376, RFC 8463); SMTP submission and inbound SMTP to come."""
