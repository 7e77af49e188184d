"""The gateway: nginx in microservices mode, configured by the project (`sensorcloud gateway config`)."""
