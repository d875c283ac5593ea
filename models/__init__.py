"""pimcast.models"""
