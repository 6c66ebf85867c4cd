"""cloudcounter.hub"""
