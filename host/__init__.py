"""pimcast.host"""
