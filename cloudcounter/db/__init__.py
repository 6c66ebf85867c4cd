"""cloudcounter.db"""
