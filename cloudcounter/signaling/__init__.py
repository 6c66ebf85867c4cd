"""cloudcounter.signaling"""
