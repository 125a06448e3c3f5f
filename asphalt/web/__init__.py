"""The browser UI: server-rendered pages on the same URLs as the JSON API."""
