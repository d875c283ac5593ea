"""pimcast.sim"""
