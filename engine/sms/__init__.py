"""The SMS channel: campaign files, notifications, the sender, receipts, inbound
keywords and reply threading (protocol cores and I/O are in carriers/sms)."""
