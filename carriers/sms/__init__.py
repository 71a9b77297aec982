"""SMS: GSM 03.38 / UCS-2 encoding and segmentation (SMPP and HTTP adapters to follow)."""
