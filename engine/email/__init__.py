"""The email channel: campaign files, notifications, composition, one-click
unsubscribe, bounces and replies (SMTP, DKIM and inbound mail are in carriers/email)."""
