"""SMS: GSM 03.38 / UCS-2 encoding and segmentation, the SMPP client, HTTP aggregator adapters."""
