"""cloudcounter.sim"""
