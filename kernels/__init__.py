"""kdtool.kernels"""
