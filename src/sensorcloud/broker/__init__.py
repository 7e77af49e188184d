"""The MQTT side: device authentication and topic ACL, the embedded broker, Mosquitto's configuration."""
