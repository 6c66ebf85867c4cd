"""cloudcounter.queue"""
