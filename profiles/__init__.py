"""kdtool.profiles"""
