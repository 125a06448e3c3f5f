"""The worker side: register with a master, lease jobs, run them, report back."""
