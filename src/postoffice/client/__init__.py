"""The client side: SMTP connections shared by the relay agent and the user agent.

The user agent itself lives here too: accounts and discovery, composing and submitting,
the POP3 client and fetching, and reading the local Maildir; `cli/` only wires it up.
"""
