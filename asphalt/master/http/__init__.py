"""The master's HTTP surfaces: the user API (api.py, admin.py), the worker protocol
(worker_api.py), who may call each (auth.py), and what every handler shares (common.py)."""
