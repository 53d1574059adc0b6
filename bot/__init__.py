"""The chat side (async): the Discord client, and a terminal group chat for trying it locally."""
