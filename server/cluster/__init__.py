"""Several instances on one draft: Redis fan-out of committed updates, awareness and access
changes, and review turns across instances."""
