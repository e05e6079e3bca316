"""Notifications: alerts raised with the state changes that cause them, channels, delivery."""
