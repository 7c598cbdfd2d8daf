"""The client side: SMTP connections shared by the relay agent and the user agent."""
