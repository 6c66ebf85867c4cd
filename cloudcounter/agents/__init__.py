"""cloudcounter.agents"""
