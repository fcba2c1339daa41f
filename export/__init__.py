"""kdtool.export"""
