"""Thin rclpy nodes; one node per module, each with a ``main()``."""
