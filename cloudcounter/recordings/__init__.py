"""cloudcounter.recordings"""
