"""Live state (requests, deploys, tasks, queues) behind one interface."""
