"""cloudcounter.media"""
