"""Run the microservices topology on one machine from the installed binaries.

Used by `sensorcloud up-services` (`make up-services`) and by the tests that start real
PostgreSQL, Redis, Mosquitto and nginx processes: one implementation for both.
"""
