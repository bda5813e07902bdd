"""Serving: the OpenAI moderation endpoint, the guarding gateway and the small chat server."""
