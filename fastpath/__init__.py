"""Hot kernels of the analysis cycle, written in Cython.

Each module here (indicators, volatility, correlation, patterns, budget, consensus) checks
its arguments once and then calls the compiled kernel of the same name with a leading
underscore, which does arithmetic only.
"""
