"""What Asphalt keeps and is sent, declared once and pure: records and states (records.py), the
graph rules (graph.py), request bodies (bodies.py)."""
