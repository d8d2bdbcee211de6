"""Deployment helpers: building deployments and schedules from the entity catalog."""
