"""Tests against the whole microservices topology (devstack.Topology): real processes behind nginx."""
