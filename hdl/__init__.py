"""pimcast.hdl"""
