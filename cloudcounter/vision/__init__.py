"""cloudcounter.vision"""
