"""Atlas supervisor: actor tree, CLI, admin socket, alerts, systemd notify.

Note: this top-level package shadows the unrelated `supervisor` (supervisord) distribution."""
