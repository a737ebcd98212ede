"""Deployment profiles: where runs are stored (SQLite or PostgreSQL), where steps execute (this
machine's processes, Celery workers, Kubernetes pods), and the concurrency pools of each."""
