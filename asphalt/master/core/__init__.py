"""The core: composed services, each owning one thing, around the one door for job state
changes (lifecycle.py); the composition root is scheduler.py. Never imports aiohttp."""
