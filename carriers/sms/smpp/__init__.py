"""SMPP 3.4 client: sans-IO PDU codec and session, thin asyncio transport."""
